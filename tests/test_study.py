"""`ferkit study` on tiny synthetic data: every output, values equal to direct evaluation, resuming without
redoing finished work, clear errors, and the CLI end to end."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import ferkit.analysis.study as study
import ferkit.training.loop as trainer
from ferkit.transforms.augment import AugmentConfig
from ferkit.models.checkpoint import load_model
from ferkit.cli import main
from ferkit.errors import FerkitError
from ferkit.evaluation.evaluate import evaluate_model
from ferkit.transforms.occlusion import MASKS
from ferkit.analysis.study import METRICS, StudyConfig, run_study
from ferkit.training.loop import TrainConfig, train
from synthetic import learnable_dataset, standard_items, write_folder

NO_AUG = AugmentConfig(hflip=0, rotate=0, shift=0, zoom=0, shear=0, erase=0)
FINETUNE = ["upper", "lower"]
EVALUATE = ["full", "upper", "lower"]


@pytest.fixture(scope="module")
def data():
    # Each class is a bright band at its own height: angry..happy lie in the upper half, neutral..surprise in
    # the lower half (24 px, 3-px bands), so hiding a half removes exactly those classes' evidence.
    return learnable_dataset(n_train=224, n_val=70, size=24)


@pytest.fixture(scope="module")
def base(tmp_path_factory, data) -> str:
    out = tmp_path_factory.mktemp("base") / "run"
    train(TrainConfig(model="baseline_cnn", input_size=24, epochs=4, batch_size=16, optimizer="adam", lr=3e-3,
                      schedule="cosine", warmup_epochs=0, augment=NO_AUG, out=str(out), progress=False, threads=1),
          data)
    return str(out / "best.pt")


def config(base_ckpt: str, out: Path, **kw) -> StudyConfig:
    values = dict(base=base_ckpt, out=str(out), finetune=FINETUNE, evaluate=EVALUATE, eval_split="publictest",
                  epochs=2, limit_steps=3, progress=False, threads=1)
    return StudyConfig(**{**values, **kw})


@pytest.fixture(scope="module")
def finished(tmp_path_factory, base, data):
    out = tmp_path_factory.mktemp("study")
    return run_study(config(base, out), data)


def test_a_study_writes_every_output(finished):
    out = finished.out
    for name in ("matrix.csv", "matrix.md", "per_class.csv", "region_importance.md", "region_importance.json",
                 "study.json"):
        assert (out / name).stat().st_size > 0, name
    for metric in METRICS:
        assert (out / f"heatmap_{metric}.png").stat().st_size > 0, metric
    for mask in FINETUNE:
        assert (out / f"finetune-{mask}" / "last.pt").exists()
    assert len(list((out / "cells").glob("*.json"))) == 3 * len(EVALUATE)
    # matrix.csv: one block of rows per metric; rows = trained on, columns = evaluated on
    rows = list(csv.reader(open(out / "matrix.csv")))
    assert rows[0] == ["metric", "trained_on", *EVALUATE]
    assert [r[1] for r in rows[1:4]] == ["full", "full + upper", "full + lower"]
    assert {r[0] for r in rows[1:]} == set(METRICS) and len(rows) == 1 + 3 * len(METRICS)
    md = (out / "matrix.md").read_text()
    assert "| trained on \\ evaluated on | full | upper masked | lower masked |" in md
    assert all(f"## {title}" in md for title in METRICS.values())
    per_class = list(csv.DictReader(open(out / "per_class.csv")))
    assert len(per_class) == 3 * len(EVALUATE) * 7
    assert {"trained_on", "evaluated_on", "class", "accuracy", "f1"} <= set(per_class[0])


def test_the_base_learns_and_hiding_a_half_hurts_the_classes_drawn_there(finished):
    assert finished.value("full", "full") > 0.6  # chance is 1/7
    assert finished.value("full", "upper") < finished.value("full", "full")
    info = json.loads((finished.out / "region_importance.json").read_text())
    assert info["model"] == "full"
    worst = {emotion: r["worst"] for emotion, r in info["per_class"].items()}
    upper_classes, lower_classes = ["angry", "disgust", "fear", "happy"], ["neutral", "sad", "surprise"]
    # a model that sees no band at all still guesses one class right, so ask for a clear majority
    assert sum(worst[e] == "upper" for e in upper_classes) >= 3
    assert sum(worst[e] == "lower" for e in lower_classes) >= 2
    assert "| emotion | full | most harmful |" in (finished.out / "region_importance.md").read_text()


def test_matrix_values_equal_direct_evaluation(finished, data):
    for row, ckpt, condition in [("full + upper", finished.out / "finetune-upper" / "last.pt", "lower"),
                                 ("full", finished.models[0].checkpoint, "full")]:
        model, mcfg = load_model(ckpt)
        direct = evaluate_model(model, mcfg, data.split("publictest"), tta="none",
                                occlusion=None if condition == "full" else condition).metrics
        for metric in METRICS:
            assert finished.value(row, condition, metric) == pytest.approx(direct[metric])
        assert finished.cells[finished.models[1].key if row != "full" else "base", condition]["per_class"] == \
            direct["per_class"]


def test_an_interrupted_study_resumes_without_redoing_finished_work(tmp_path, base, data, finished, monkeypatch):
    cfg = config(base, tmp_path / "study")
    real_write, real_eval, real_train = trainer.write_history, study.evaluate_model, study.train

    # 1. Ctrl-C after the first epoch of the second fine-tune (the first one has finished).
    def interrupt_lower(out, history, **kw):
        real_write(out, history, **kw)
        if out.name == "finetune-lower" and len(history) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "write_history", interrupt_lower)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, data)
    monkeypatch.setattr(trainer, "write_history", real_write)

    # 2. Resume: only the interrupted fine-tune trains (from its last.pt); Ctrl-C again after 3 cells.
    trained, evaluated, stop_after = [], [], [3]

    def counting_train(tc, dataset=None):
        trained.append((Path(tc.out).name, tc.resume))
        return real_train(tc, dataset)

    def counting_eval(*args, **kw):
        if len(evaluated) == stop_after[0]:
            raise KeyboardInterrupt
        evaluated.append(kw.get("occlusion"))
        return real_eval(*args, **kw)

    monkeypatch.setattr(study, "train", counting_train)
    monkeypatch.setattr(study, "evaluate_model", counting_eval)
    with pytest.raises(KeyboardInterrupt):
        run_study(cfg, data)
    assert trained == [("finetune-lower", True)]
    cells = sorted((tmp_path / "study" / "cells").glob("*.json"))
    assert len(cells) == 3
    stamps = {p: p.stat().st_mtime_ns for p in cells}

    # 3. Resume again: nothing trains, only the missing cells are evaluated, finished cells stay untouched.
    trained.clear(), evaluated.clear(), stop_after.clear()
    stop_after.append(None)
    result = run_study(cfg, data)
    assert trained == []
    assert len(evaluated) == 3 * len(EVALUATE) - 3
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    # Resuming the trainer is bit-exact, so the interrupted study ends where the uninterrupted one did.
    for metric in METRICS:
        np.testing.assert_allclose(result.matrix(metric), finished.matrix(metric))

    # 4. A finished study run again does nothing but rewrite its tables.
    evaluated.clear()
    run_study(cfg, data)
    assert trained == [] and evaluated == []


def test_changed_settings_do_not_silently_reuse_old_runs(finished, base, data):
    with pytest.raises(FerkitError, match="epochs"):
        run_study(config(base, finished.out, epochs=3), data)


def test_cells_are_redone_when_the_evaluation_changes(tmp_path, finished, base, data, monkeypatch):
    shutil.copytree(finished.out, tmp_path / "copy")  # a copied study folder is still a finished study ...
    calls, trained = [], []
    real = study.evaluate_model
    monkeypatch.setattr(study, "evaluate_model", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    monkeypatch.setattr(study, "train", lambda *a, **kw: trained.append(1))
    run_study(config(base, tmp_path / "copy"), data)
    assert calls == [] and trained == []
    result = run_study(config(base, tmp_path / "copy", eval_limit=30), data)  # ... until the evaluation changes
    assert len(calls) == 3 * len(EVALUATE) and result.n == 30 and trained == []


@pytest.mark.parametrize("kw, message", [
    (dict(finetune=["upper", "nose"]), "valid masks: upper, lower, left, right, forehead, eyes, mouth"),
    (dict(evaluate=["full", "chin"]), "valid masks: " + ", ".join(MASKS)),
    (dict(finetune=["full"]), "the base model itself"),
    (dict(base=None), "--base CKPT .* or --train-base"),
    (dict(train_base=True), "not both"),
    (dict(extra=["full=x.pt"]), "taken"),
    (dict(tta="mirror"), "unknown --tta 'mirror'"),
    (dict(finetune_lr_scale=-1.0), "--lr-scale must be positive"),
    (dict(eval_limit=-5), "--eval-limit 0 or more"),
])
def test_bad_input_fails_clearly_before_any_work(tmp_path, base, data, kw, message):
    with pytest.raises(FerkitError, match=message):
        run_study(config(base, tmp_path / "s", **kw), data)
    assert not (tmp_path / "s" / "cells").exists()


def test_an_ensemble_base_is_refused_and_its_member_studied(tmp_path, base, data, finished):
    from ferkit.models.ensemble import combine_checkpoints

    ens = str(combine_checkpoints([base, base], tmp_path / "ens.pt"))
    with pytest.raises(FerkitError, match=r"ensemble of 2 networks.*ens.pt#0 to .*ens.pt#1"):
        run_study(config(ens, tmp_path / "s"), data)
    assert not (tmp_path / "s" / "cells").exists()
    # Member 1 is the base itself: evaluated alone, it scores what the base scored.
    result = run_study(config(f"{ens}#1", tmp_path / "m", finetune=[], evaluate=EVALUATE), data)
    np.testing.assert_allclose(result.matrix()[0], finished.matrix()[0])


def test_extra_rows_are_named_after_their_run_folder(tmp_path, base, data):
    result = run_study(config(base, tmp_path / "s", finetune=[], evaluate=["full", "left"], extra=[base]), data)
    assert [m.label for m in result.models] == ["full", Path(base).parent.name]
    # the same checkpoint twice: same numbers in both rows
    np.testing.assert_allclose(result.matrix()[0], result.matrix()[1])


def test_cli_quick_runs_end_to_end(tmp_path, capsys):
    root = write_folder(tmp_path / "fer", standard_items(per_class=10))  # 70 train images: one batch of 64
    out = tmp_path / "study"
    code = main(["study", "--data", str(root), "--train-base", "--model", "baseline_cnn", "--quick",
                 "--finetune", "upper", "--evaluate", "full,lower", "--out", str(out), "--no-progress",
                 "--threads", "1"])
    assert code == 0
    printed = capsys.readouterr()
    assert "| full + upper |" in printed.out and "matrix.md" in printed.err
    assert (out / "base" / "best.pt").exists() and (out / "finetune-upper" / "last.pt").exists()
    assert json.loads((out / "study.json").read_text())["config"]["quick"] is True
    assert main(["study", "--data", str(root), "--out", str(out)]) == 2
    assert "--train-base" in capsys.readouterr().err
