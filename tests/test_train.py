"""The trainer on tiny synthetic data: it learns, writes its run folder, resumes exactly, fails clearly."""
import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ferkit.transforms.augment import AugmentConfig
from ferkit.models.checkpoint import load_checkpoint, load_model
from ferkit.errors import FerkitError
from ferkit.training.batches import class_weight_vector, epoch_order
from ferkit.training.config import RECIPES, SCHEDULES, TrainConfig
from ferkit.training.loop import TrainingDiverged, train
from ferkit.training.schedule import lr_factor
from synthetic import learnable_dataset, tiny_config as tiny


@pytest.fixture(scope="module")
def data():
    return learnable_dataset(n_train=224, n_val=70, size=24)


def test_training_learns_and_writes_the_run_folder(tmp_path, data):
    summary = train(tiny(tmp_path, epochs=4, optimizer="adam", lr=3e-3), data)
    run = Path(summary["run_dir"])
    assert summary["best_val_accuracy"] > 0.6  # chance is 1/7
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png", "config.json", "summary.json"):
        assert (run / name).exists(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert {"lr", "train_loss", "val_accuracy", "images_per_s", "data_share"} <= set(rows[0])
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["model"] == "baseline_cnn" and config["model"]["input_size"] == 24
    # checkpoints are plain data + tensors and load with weights_only=True
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["config"]["labels"] == list(data.label_names)
    model, mcfg = load_model(run / "best.pt")
    assert mcfg.arch == "baseline_cnn"


def test_curves_are_redrawn_at_most_every_30_s_and_at_the_end(tmp_path, data, monkeypatch):
    # Plotting costs a tenth of a GPU epoch; metrics.csv is still written every epoch.
    import ferkit.training.loop as trainer

    real_write, plots = trainer.write_history, []

    def spy(out, history, plot=True):
        plots.append(plot)
        real_write(out, history, plot=plot)
        assert (out / "curves.png").exists() == any(plots)
        assert len(list(csv.DictReader(open(out / "metrics.csv")))) == len(history)

    monkeypatch.setattr(trainer, "write_history", spy)
    train(tiny(tmp_path, epochs=3), data)
    assert plots == [False, False, True]



@pytest.mark.parametrize("ema, swa, sam", [(0.0, 0, 0.0), (0.9, 0, 0.0), (0.0, 2, 0.0), (0.0, 0, 0.05)])
def test_resume_after_interruption_gives_bit_identical_weights(tmp_path, data, monkeypatch, ema, swa, sam):
    kw = dict(epochs=3, augment=AugmentConfig(erase=0.3, rotate=10), cutmix=1.0, mix_prob=0.5, label_smoothing=0.1,
              ema=ema, swa=swa, sam=sam)
    full = tiny(tmp_path / "a", **kw)
    train(full, data)

    import ferkit.training.loop as trainer

    real_write = trainer.write_history

    def interrupt_after_epoch_2(out, history, **kw):
        real_write(out, history, **kw)
        if len(history) == 2:
            raise KeyboardInterrupt  # Ctrl-C right after epoch 2's checkpoint

    monkeypatch.setattr(trainer, "write_history", interrupt_after_epoch_2)
    part = tiny(tmp_path / "b", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(part, data)
    monkeypatch.setattr(trainer, "write_history", real_write)
    part.resume = True
    train(part, data)
    for name in ("last.pt", "best.pt"):  # best.pt holds the weight average with --ema or --swa
        a = load_checkpoint(Path(full.out) / name)["state_dict"]
        b = load_checkpoint(Path(part.out) / name)["state_dict"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    if ema:
        a, b = (load_checkpoint(Path(c.out) / "last.pt")["train_state"]["ema"] for c in (full, part))
        assert a["updates"] == b["updates"] == 3 * (224 // 16)
        assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
    if swa:
        a, b = (load_checkpoint(Path(c.out) / "last.pt")["train_state"]["swa"] for c in (full, part))
        assert a["updates"] == b["updates"] == 2
        assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_every_optimizer_runs(tmp_path, data, optimizer):
    summary = train(tiny(tmp_path, epochs=1, optimizer=optimizer, lr=1e-3, limit_steps=3), data)
    assert summary["epochs_run"] == 1


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_runs_with_balancing_and_mixing(tmp_path, data, schedule):
    cfg = tiny(tmp_path, epochs=2, schedule=schedule, limit_steps=3, class_weights=True, oversample=True,
               mixup=0.4, label_smoothing=0.1, augment=AugmentConfig())
    assert train(cfg, data)["epochs_run"] == 2


def test_lr_schedules_have_the_documented_shape():
    cfg = TrainConfig(epochs=10, schedule="step", step_size=5, gamma=0.1, warmup_epochs=0)
    assert lr_factor(cfg, 0, 100, 1.0) == 1.0 and lr_factor(cfg, 499, 100, 1.0) == 1.0
    assert lr_factor(cfg, 500, 100, 1.0) == pytest.approx(0.1)
    one = TrainConfig(epochs=10, schedule="onecycle", warmup_epochs=1)
    assert lr_factor(one, 0, 100, 1.0) == pytest.approx(0.04)
    assert lr_factor(one, 100, 100, 1.0) == pytest.approx(1.0)
    assert lr_factor(one, 999, 100, 1.0) < 1e-3
    plateau = TrainConfig(schedule="plateau", warmup_epochs=0)
    assert lr_factor(plateau, 50, 100, 0.01) == 0.01


def test_class_weights_and_oversampling_balance_classes():
    labels = np.array([0] * 90 + [1] * 10)
    w = class_weight_vector(labels, 2)
    assert w[1] / w[0] == pytest.approx(9.0)
    order = epoch_order(torch.as_tensor(labels), True, torch.Generator().manual_seed(0))
    share = (torch.as_tensor(labels)[order] == 1).float().mean().item()
    assert 0.4 < share < 0.6


def test_early_stopping_stops(tmp_path, data):
    summary = train(tiny(tmp_path, epochs=8, lr=0.0, early_stop=1, limit_steps=2), data)
    assert summary["epochs_run"] < 8


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, data):
    cfg = tiny(tmp_path, epochs=1, limit_steps=2)
    train(cfg, data)
    good = load_checkpoint(Path(cfg.out) / "last.pt")["state_dict"]
    boom = tiny(tmp_path, epochs=3, resume=True, lr=1e30, optimizer="sgd", schedule="constant")
    with pytest.raises(TrainingDiverged, match="last good checkpoint"):
        train(boom, data)
    kept = load_checkpoint(Path(cfg.out) / "last.pt")["state_dict"]
    assert all(torch.equal(good[k], kept[k]) for k in good)


def test_kfold_reports_mean_and_std(tmp_path, data):
    summary = train(tiny(tmp_path, epochs=1, folds=3, limit_steps=2), data)
    assert len(summary["fold_accuracy"]) == 3
    assert summary["mean_accuracy"] == pytest.approx(np.mean(summary["fold_accuracy"]))
    assert (Path(summary["run_dir"]) / "fold3" / "best.pt").exists()


def test_finetune_from_a_checkpoint_of_another_architecture_is_refused(tmp_path, data):
    train(tiny(tmp_path, epochs=1, limit_steps=1), data)
    with pytest.raises(FerkitError, match="baseline_cnn"):
        train(tiny(tmp_path / "ft", model="fernet_s", finetune=str(tmp_path / "run" / "best.pt")), data)


def test_finetune_from_an_ensemble_names_the_way_out(tmp_path, data):
    from synthetic import seeded_checkpoint

    from ferkit.models.ensemble import combine_checkpoints

    members = [seeded_checkpoint(tmp_path / f"m{i}.pt", seed=i, input_size=24) for i in range(2)]
    ensemble = combine_checkpoints(members, tmp_path / "ens.pt")
    with pytest.raises(FerkitError, match=r"an ensemble of 2 networks.*fine-tune one of its members \(.*ens.pt#0 to"):
        train(tiny(tmp_path, finetune=str(ensemble)), data)
    assert not (tmp_path / "run" / "last.pt").exists()  # refused before the first step
    # The way out it names: a member, which starts from that member's weights.
    train(tiny(tmp_path / "ft", finetune=f"{ensemble}#1", epochs=1, limit_steps=1, lr=0.0), data)
    tuned = load_checkpoint(tmp_path / "ft" / "run" / "last.pt")["state_dict"]
    start = load_checkpoint(members[1])["state_dict"]
    assert all(torch.equal(tuned[k], start[k]) for k in start if start[k].is_floating_point() and "running" not in k)


def test_fewer_images_than_a_batch_is_a_clear_error(tmp_path, data):
    with pytest.raises(FerkitError, match="batch-size"):
        train(tiny(tmp_path, batch_size=4096), data)


@pytest.mark.parametrize("setting", [dict(tta="mirror"), dict(teacher="default", teacher_tta="mirror")])
def test_an_unknown_tta_is_refused_before_the_first_step(tmp_path, data, setting):
    # Validation is the first code to use --tta, so without the up-front check (whose message names the flag)
    # the run died only after an epoch of training, with "unknown TTA mode".
    with pytest.raises(FerkitError, match="unknown --(teacher-)?tta 'mirror'"):
        train(tiny(tmp_path, epochs=1, **setting), data)


@pytest.mark.parametrize("setting, message", [
    (dict(model="resnet9"), "unknown model 'resnet9'"),
    (dict(epochs=0), "--epochs must be at least 1"),
    (dict(batch_size=0), "--batch-size must be at least 1"),
    (dict(lr=-1.0), "--lr must be 0 or more"),
    (dict(label_smoothing=1.0), "--label-smoothing must be in"),
    (dict(mix_prob=3.0), "--mix-prob is a probability"),
    (dict(augment=AugmentConfig(erase=1.5)), "--erase is a probability"),
    (dict(precision="half"), "unknown precision 'half'; choose one of auto, fp32, bf16, fp16"),
    (dict(schedule="linear"), "unknown schedule 'linear'"),
    (dict(optimizer="lion"), "unknown optimizer 'lion'"),
    (dict(device="gpu"), "unknown device 'gpu'"),
    (dict(train_masks=["nose"]), "unknown occlusion mask 'nose'"),
])
def test_settings_that_cannot_train_are_refused_before_the_data_is_read(tmp_path, setting, message):
    # data points nowhere: the check has to come before load_dataset, which would fail on the missing path.
    with pytest.raises(FerkitError, match=re.escape(message)):
        train(tiny(tmp_path, data=str(tmp_path / "missing.zip"), **setting))
    assert not (tmp_path / "run").exists()


def test_torchrun_two_cpu_processes(tmp_path):
    """DistributedDataParallel with gloo: two processes train one model and rank 0 writes the run."""
    script = tmp_path / "ddp.py"
    script.write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "from synthetic import learnable_dataset, tiny_config as tiny\n"
        "from ferkit.transforms.augment import AugmentConfig\n"
        "from ferkit.training.loop import TrainConfig, train\n"
        "cfg = TrainConfig(model='baseline_cnn', input_size=24, epochs=2, batch_size=16, lr=0.02,\n"
        "    out=%r, progress=False, threads=1, augment=AugmentConfig(erase=0.2))\n"
        "print(train(cfg, learnable_dataset(224, 70, 24)))\n" % (str(Path(__file__).parent), str(tmp_path / "ddp"))
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "ddp" / "metrics.csv")))
    assert len(rows) == 2
    # each rank takes half of every epoch: 224 images / (16 x 2 ranks) = 7 steps of 32 images
    assert math.isfinite(float(rows[-1]["val_loss"]))


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipes_build_their_model_and_explicit_flags_override_them(recipe):
    from ferkit.cli import build_parser
    from ferkit.cli.train import build_config
    from ferkit.models import create_model

    args = build_parser().parse_args(["train", "--data", "x.zip", "--out", "runs/x", "--recipe", recipe,
                                      "--epochs", "3", "--rotate", "4"])
    cfg = build_config(args)
    assert cfg.epochs == 3 and cfg.augment.rotate == 4
    assert cfg.model == RECIPES[recipe]["model"] and cfg.optimizer == RECIPES[recipe]["optimizer"]
    assert cfg.augment.hflip == RECIPES[recipe]["augment"].hflip  # the rest of the recipe's augmentation stays
    assert cfg.in_chans == 0  # no recipe fixes the channels: the dataset decides (FER2013: 1)
    net = create_model(cfg.model, num_classes=7, in_chans=1, input_size=cfg.input_size)
    assert net(torch.zeros(2, 1, cfg.input_size, cfg.input_size)).shape == (2, 7)


def test_unknown_recipe_lists_the_known_ones():
    from ferkit.cli import build_parser
    from ferkit.cli.train import build_config

    with pytest.raises(FerkitError, match="default, fast, baseline"):
        build_config(build_parser().parse_args(["train", "--data", "x.zip", "--out", "runs/x", "--recipe", "nope"]))
