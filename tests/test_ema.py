"""The weight average (--ema) and choosing best.pt under the checkpoint's own TTA."""
import csv
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from ferkit.augment import AugmentConfig
from ferkit.checkpoint import load_checkpoint, load_model
from ferkit.ema import WeightAverage
from ferkit.errors import FerkitError
from ferkit.inference import classify
from ferkit.train import train
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
