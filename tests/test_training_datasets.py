"""The trainer on datasets other than FER2013: colour faces, validation carved from train, subject folds and
the soft labels of vote-based datasets (FER+)."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from ferkit.errors import FerkitError
from ferkit.models.checkpoint import load_checkpoint
from ferkit.training.batches import TrainingBatches
from ferkit.training.config import check_config, val_share
from ferkit.training.distributed import Distributed
from ferkit.training.loop import model_config_for, train

from synthetic import learnable_dataset, tiny_config


def _colour(ds):
    return replace(ds, images=np.repeat(ds.images[..., None], 3, axis=3))


def _without_val(ds):
    return replace(ds, splits=np.full(len(ds), "train"))


def test_a_colour_dataset_trains_a_colour_model_unless_told_otherwise(tmp_path):
    ds = _colour(learnable_dataset(n_train=64, n_val=32, size=24))
    train(tiny_config(tmp_path / "rgb", epochs=1), ds)
    config = load_checkpoint(tmp_path / "rgb" / "run" / "best.pt")["config"]
    assert config["in_chans"] == 3 and config["mean"] == [0.5] * 3
    train(tiny_config(tmp_path / "gray", epochs=1, in_chans=1), ds)
    assert load_checkpoint(tmp_path / "gray" / "run" / "best.pt")["config"]["in_chans"] == 1


def test_a_share_as_val_split_validates_on_faces_carved_from_train(tmp_path):
    ds = _without_val(learnable_dataset(n_train=112, n_val=0, size=24))
    summary = train(tiny_config(tmp_path, epochs=1, val_split="0.25"), ds)
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["n_val"] == 28 and info["n_train"] == 84  # a quarter, stratified over the 7 classes
    assert summary["selected_on"] == "val_accuracy"


def test_a_dataset_without_the_val_split_says_how_to_get_one(tmp_path):
    ds = _without_val(learnable_dataset(n_train=64, n_val=0, size=24))
    with pytest.raises(FerkitError, match=r"no 'val' split.*--val-split 0\.15"):
        train(tiny_config(tmp_path, epochs=1), ds)


def test_val_split_must_name_a_split_or_a_share(tmp_path):
    assert val_share("0.15") == 0.15 and val_share("publictest") is None and val_share("") is None
    for bad in ("1.5", "0", "-0.2"):
        with pytest.raises(FerkitError, match="--val-split"):
            check_config(tiny_config(tmp_path, val_split=bad))


def test_folds_keep_each_subject_in_one_fold(tmp_path, monkeypatch):
    ds = _without_val(learnable_dataset(n_train=84, n_val=0, size=24))
    ds = replace(ds, groups=np.array([f"S{i % 6}" for i in range(len(ds))]))
    seen = []

    def fake_run(cfg, train_ds, val_ds, label_names):
        seen.append((set(train_ds.groups), set(val_ds.groups)))
        return {"best_val_accuracy": 0.5}

    monkeypatch.setattr("ferkit.training.loop.run", fake_run)
    train(tiny_config(tmp_path, folds=3, val_split=""), ds)
    assert len(seen) == 3
    for train_groups, val_groups in seen:
        assert not train_groups & val_groups  # nobody is trained on and validated on
    assert set().union(*(v for _, v in seen)) == {f"S{i}" for i in range(6)}


def _batches(tmp_path, ds, **kw):
    cfg = tiny_config(tmp_path, in_chans=1, batch_size=8, **kw)
    mcfg = model_config_for(cfg, ds.label_names)
    return TrainingBatches(cfg, mcfg, ds, torch.device("cpu"), Distributed())


def _voted(ds, mode):
    k = len(ds.label_names)
    votes = np.zeros((len(ds), k), np.float32)
    votes[np.arange(len(ds)), ds.labels] = 0.6
    votes[np.arange(len(ds)), (ds.labels + 1) % k] = 0.4
    return replace(ds, targets=votes, target_mode=mode)


def test_crossentropy_soft_labels_are_the_training_targets(tmp_path):
    ds = _voted(learnable_dataset(n_train=32, n_val=0, size=24), "crossentropy")
    _, y, targets = next(_batches(tmp_path, ds, mixup=0.0, cutmix=0.0).epoch(0))
    assert torch.allclose(targets.sum(1), torch.ones(len(y)))
    assert torch.allclose(targets[torch.arange(len(y)), y], torch.full((len(y),), 0.6))


def test_probability_soft_labels_draw_one_class_per_face_from_the_votes(tmp_path):
    ds = _voted(learnable_dataset(n_train=400, n_val=0, size=24), "probability")
    batches = _batches(tmp_path, ds, mixup=0.0, cutmix=0.0)
    draws = []
    for _, y, targets in batches.epoch(0):
        assert set(targets.unique().tolist()) <= {0.0, 1.0} and torch.all(targets.sum(1) == 1)
        k = targets.shape[1]
        drawn = targets.argmax(1)
        assert torch.all((drawn == y) | (drawn == (y + 1) % k))  # only classes with votes
        draws.append((drawn == y).float())
    share = torch.cat(draws).mean().item()
    assert 0.5 < share < 0.7  # the top class is drawn about 60% of the time


def test_multi_target_labels_are_refused_with_the_modes_that_train(tmp_path):
    ds = _voted(learnable_dataset(n_train=32, n_val=16, size=24), "multi_target")
    with pytest.raises(FerkitError, match="--label-mode crossentropy or probability"):
        train(tiny_config(tmp_path, epochs=1), ds)


def test_faces_mapped_from_the_cache_are_read_batch_by_batch_not_copied_whole(tmp_path):
    ds = _colour(learnable_dataset(n_train=64, n_val=16, size=24))
    np.save(tmp_path / "faces.npy", ds.images)
    mapped = replace(ds, images=np.load(tmp_path / "faces.npy", mmap_mode="r"))
    batches = _batches(tmp_path, mapped.split("train"), mixup=0.0, cutmix=0.0)
    assert batches.images is None  # nothing resident: the mapped file is the store
    x, y, _ = next(batches.epoch(0))
    # Labels follow their faces: learnable_dataset paints each face's band at the rows its label names.
    rows, band = x.mean(dim=(1, 3)), 24 // 7
    for face_rows, label in zip(rows, y.tolist()):
        assert face_rows[label * band:(label + 1) * band].mean() > face_rows.mean()
    assert train(tiny_config(tmp_path / "run", epochs=1), mapped)["epochs_run"] == 1
