"""The learning-rate schedule: reduce-on-plateau decays on the validation loss, as --plateau-patience says, and
keeps its place across --resume; without validation data it is refused."""
import csv
import re
from pathlib import Path

import pytest

import ferkit.training.loop as trainer
from ferkit.errors import FerkitError
from ferkit.training.config import TrainConfig, check_config
from ferkit.training.loop import run, train
from ferkit.training.schedule import Plateau
from synthetic import learnable_dataset, tiny_config as tiny


@pytest.fixture(scope="module")
def data():
    return learnable_dataset(n_train=64, n_val=14, size=24)


def test_plateau_decays_after_patience_epochs_without_a_lower_loss_and_counts_again():
    plateau = Plateau(patience=2, gamma=0.5)
    scales = []
    for loss in [1.0, 0.9, 0.9, 0.89995, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8]:
        plateau.step(loss)
        scales.append(plateau.scale)
    # 0.89995 is within min_delta (1e-4) of the best 0.9: no improvement. 0.8 is, and restarts the count.
    assert scales == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.125]
    assert plateau.best_loss == 0.8

    copy = Plateau(patience=2, gamma=0.5)
    copy.load_state_dict(plateau.state_dict())
    assert (copy.scale, copy.best_loss, copy.stale) == (0.125, 0.8, 0)


def scripted_validation(monkeypatch, losses):
    """Validation that reports ``losses`` epoch after epoch, with an accuracy that rises every epoch: the rate
    must follow the loss, not the accuracy best.pt is chosen on."""
    script = iter(enumerate(losses))

    def validate(model, mcfg, val_ds, device, tta="none", prefix="val", batch_size=256):
        epoch, loss = next(script)
        return {f"{prefix}_loss": loss, f"{prefix}_accuracy": 0.1 + 0.01 * epoch}

    monkeypatch.setattr(trainer, "validate", validate)


LOSSES = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8]


def lr_column(run_dir: Path) -> list[float]:
    return [float(r["lr"]) for r in csv.DictReader(open(run_dir / "metrics.csv"))]


def test_a_plateau_run_lowers_the_rate_after_patience_epochs_of_flat_validation_loss(tmp_path, data, monkeypatch):
    scripted_validation(monkeypatch, LOSSES)
    cfg = tiny(tmp_path, epochs=7, schedule="plateau", lr=0.01, gamma=0.5, plateau_patience=2, limit_steps=1)
    summary = train(cfg, data)
    # epochs 3 and 4 do not beat epoch 2's 0.9: from epoch 5 the rate is halved; epoch 6's 0.8 keeps it there
    assert lr_column(Path(summary["run_dir"])) == pytest.approx([0.01] * 4 + [0.005] * 3)


def test_a_resumed_plateau_run_keeps_the_count_and_the_scale(tmp_path, data, monkeypatch):
    kw = dict(epochs=7, schedule="plateau", lr=0.01, gamma=0.5, plateau_patience=2, limit_steps=1)
    scripted_validation(monkeypatch, LOSSES)
    full = train(tiny(tmp_path / "a", **kw), data)
    real_write = trainer.write_history

    def interrupt_after_epoch_4(out, history, **kw):
        real_write(out, history, **kw)
        if len(history) == 4:  # after the decay, before any epoch has run at the new rate
            raise KeyboardInterrupt

    scripted_validation(monkeypatch, LOSSES)  # one script for the interrupted run and its resumption
    monkeypatch.setattr(trainer, "write_history", interrupt_after_epoch_4)
    part = tiny(tmp_path / "b", **kw)
    with pytest.raises(KeyboardInterrupt):
        train(part, data)
    monkeypatch.setattr(trainer, "write_history", real_write)
    part.resume = True
    resumed = train(part, data)
    assert lr_column(Path(resumed["run_dir"])) == lr_column(Path(full["run_dir"]))


def test_plateau_without_validation_data_is_refused_before_the_data_is_read(tmp_path, data):
    message = re.escape("--schedule plateau decays the rate when the validation loss stops falling")
    with pytest.raises(FerkitError, match=message):
        train(tiny(tmp_path, schedule="plateau", val_split="", data=str(tmp_path / "missing.zip")))
    with pytest.raises(FerkitError, match=message):  # a caller bringing its own splits, without a validation one
        run(tiny(tmp_path, schedule="plateau"), data.split("train"), None, data.label_names)
    assert not (tmp_path / "run").exists()
    check_config(TrainConfig(schedule="plateau", val_split="", folds=3))  # every fold validates on its held-out part


@pytest.mark.parametrize("setting", [dict(plateau_patience=0), dict(step_size=0)])
def test_schedules_that_count_epochs_need_at_least_one(setting):
    with pytest.raises(FerkitError, match="count epochs, 1 or more"):
        check_config(TrainConfig(**setting))
