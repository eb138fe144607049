"""The weight averages (--ema, --swa) and choosing best.pt under the checkpoint's own TTA."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from ferkit.transforms.augment import AugmentConfig
from ferkit.models.checkpoint import load_checkpoint, load_model
from ferkit.training.averaging import EqualAverage, WeightAverage, recompute_batchnorm
from ferkit.errors import FerkitError
from ferkit.inference.torch_backend import classify
from ferkit.training.loop import train
from synthetic import learnable_dataset, tiny_config as tiny


@pytest.fixture(scope="module")
def data():
    return learnable_dataset(n_train=224, n_val=70, size=24)


def test_the_average_follows_the_documented_update():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = WeightAverage(net, decay=0.5)
    w0 = net[0].weight.detach().clone()
    with torch.no_grad():
        net[0].weight.add_(1.0)
    net.train()(torch.randn(8, 3))  # moves the running statistics and the integer step counter
    avg.update(net)
    # first update: decay capped at (1 + 1) / (10 + 1), so the average moves 9/11 of the way
    expected = w0 + (9 / 11) * (net[0].weight.detach() - w0)
    assert torch.allclose(avg.module[0].weight, expected)
    assert avg.module[1].num_batches_tracked.item() == 1  # integers are copied, not averaged
    for _ in range(50):
        avg.update(net)
    assert torch.allclose(avg.module[0].weight, net[0].weight, atol=1e-6)  # converges to constant weights
    assert not avg.module[0].weight.requires_grad


@pytest.mark.parametrize("decay", [1.0, -0.1])
def test_a_decay_outside_0_1_is_a_clear_error(tmp_path, data, decay):
    with pytest.raises(FerkitError, match="--ema"):
        train(tiny(tmp_path, ema=decay), data)


def test_best_holds_the_average_and_is_chosen_on_its_tta_accuracy(tmp_path, data):
    summary = train(tiny(tmp_path, epochs=1, ema=0.9, tta="flip"), data)
    assert summary["selected_on"] == "ema_val_accuracy_tta"
    run = Path(summary["run_dir"])
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert {"val_accuracy", "val_accuracy_tta", "ema_val_loss", "ema_val_accuracy", "ema_val_accuracy_tta"} <= set(rows[0])
    best = load_checkpoint(run / "best.pt")["state_dict"]
    last = load_checkpoint(run / "last.pt")
    average, raw = last["train_state"]["ema"]["weights"], last["state_dict"]
    assert all(torch.equal(best[k], average[k]) for k in best)  # one epoch: best is that epoch's average
    assert any(not torch.equal(best[k], raw[k]) for k in best if best[k].is_floating_point())
    # the logged accuracy is what inference with the shipped TTA gets from best.pt
    model, mcfg = load_model(run / "best.pt")
    val = data.split("publictest")
    accuracy = (classify(model, val.images, mcfg).argmax(1) == val.labels).mean()
    assert accuracy == pytest.approx(float(rows[0]["ema_val_accuracy_tta"]))


def test_without_ema_best_is_chosen_on_the_shipped_tta(tmp_path, data):
    summary = train(tiny(tmp_path, epochs=4, tta="flip", augment=AugmentConfig(erase=0.3)), data)
    rows = list(csv.DictReader(open(Path(summary["run_dir"]) / "metrics.csv")))
    tta = [float(r["val_accuracy_tta"]) for r in rows]
    assert summary["selected_on"] == "val_accuracy_tta"
    assert summary["best_epoch"] == 1 + int(np.argmax(tta)) and summary["best_val_accuracy"] == max(tta)
    assert load_checkpoint(Path(summary["run_dir"]) / "best.pt")["meta"]["epoch"] == summary["best_epoch"]
    plain = train(tiny(tmp_path / "plain", epochs=1), data)
    assert plain["selected_on"] == "val_accuracy"


def test_the_equal_average_is_the_plain_mean_of_its_updates():
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    avg = EqualAverage(net)
    seen = []
    for shift in (1.0, 2.0, 6.0):
        with torch.no_grad():
            net[0].weight.add_(shift)
        seen.append(net[0].weight.detach().clone())
        avg.update(net)
    assert torch.allclose(avg.module[0].weight, torch.stack(seen).mean(0))
    assert avg.updates == 3


def test_recomputed_batchnorm_statistics_are_exact_means_over_the_batches():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).eval()
    batches = [torch.randn(16, 3) * 3 + 1 for _ in range(4)]
    recompute_batchnorm(net, batches)
    with torch.no_grad():
        features = [net[0](b) for b in batches]
    assert torch.allclose(net[1].running_mean, torch.cat(features).mean(0), atol=1e-5)
    # the variance is each batch's own (unbiased), averaged over the batches, as in training
    assert torch.allclose(net[1].running_var, torch.stack([f.var(0) for f in features]).mean(0), rtol=1e-4)
    assert not net.training


@pytest.mark.parametrize("kw, match", [(dict(swa=4, epochs=3), "--swa"), (dict(swa=-1), "--swa"),
                                       (dict(swa=1, ema=0.9), "--swa and --ema")])
def test_bad_swa_settings_are_clear_errors(tmp_path, data, kw, match):
    with pytest.raises(FerkitError, match=match):
        train(tiny(tmp_path, **kw), data)


def test_swa_best_holds_the_average_with_recomputed_batchnorm(tmp_path, data):
    # early stopping counts only the epochs the average is scored on, so it cannot end the run before it starts
    summary = train(tiny(tmp_path, model="fernet_s", epochs=3, swa=1, tta="flip", schedule="constant", early_stop=1),
                    data)
    assert summary["selected_on"] == "swa_val_accuracy_tta" and summary["best_epoch"] == 3
    run = Path(summary["run_dir"])
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert rows[0]["swa_val_accuracy_tta"] == "" and rows[2]["swa_val_accuracy_tta"] != ""
    best = load_checkpoint(run / "best.pt")["state_dict"]
    raw = load_checkpoint(run / "last.pt")["state_dict"]
    # an average of one epoch end is that epoch's weights; only the batch-norm statistics are recomputed
    stats = {k for k in best if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert stats and all(torch.equal(best[k], raw[k]) for k in best if k not in stats)
    assert any(not torch.equal(best[k], raw[k]) for k in stats if k.endswith("running_mean"))
    model, mcfg = load_model(run / "best.pt")
    val = data.split("publictest")
    accuracy = (classify(model, val.images, mcfg).argmax(1) == val.labels).mean()
    assert accuracy == pytest.approx(float(rows[2]["swa_val_accuracy_tta"]))


def test_swa_averages_the_last_epochs_and_without_validation_keeps_the_last_average(tmp_path, data):
    summary = train(tiny(tmp_path, epochs=3, swa=2, val_split=""), data)
    assert summary["selected_on"] == "swa_epochs" and summary["best_epoch"] == 3
    state = load_checkpoint(Path(summary["run_dir"]) / "last.pt")["train_state"]["swa"]
    assert state["updates"] == 2
