"""Validation splits and folds: stratified, seeded, whole subjects on one side."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.data.dataset import FaceDataset
from ferkit.data.splits import kfold, with_validation_split
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS


def _dataset(n_per_class=40, subjects=None, splits=None, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(7), n_per_class)
    n = len(labels)
    groups = None if subjects is None else np.array([f"S{rng.integers(subjects):03d}" for _ in range(n)])
    return FaceDataset(np.zeros((n, 4, 4), np.uint8), labels, np.array(splits or ["train"] * n),
                       np.array([f"img{i}" for i in range(n)]), EMOTIONS, "synthetic", groups=groups)


def test_validation_split_is_stratified_and_seeded():
    ds = _dataset()
    a, b, c = (with_validation_split(ds, 0.15, seed=s) for s in (0, 0, 1))
    val = a.split("val")
    assert len(val) == 7 * 6  # round(0.15 * 40) of every class
    assert set(val.class_counts().values()) == {6}
    assert np.array_equal(a.splits, b.splits) and not np.array_equal(a.splits, c.splits)
    assert len(a.split("train")) == len(ds) - len(val)


def test_validation_split_keeps_subjects_on_one_side():
    ds = with_validation_split(_dataset(subjects=20), 0.2, seed=3)
    train, val = set(ds.split("train").groups), set(ds.split("val").groups)
    assert train and val and not train & val
    assert 0.1 < len(ds.split("val")) / len(ds) < 0.3
    assert all(c > 0 for c in ds.split("val").class_counts().values())


def test_only_train_is_split_and_fer2013_val_alias_still_works():
    ds = _dataset(splits=["train"] * 200 + ["publictest"] * 80)
    carved = with_validation_split(ds, 0.25, seed=0)
    assert (carved.splits[200:] == "publictest").all()
    assert set(carved.split("val").splits) == {"val"}  # the carved split wins over the publictest alias
    assert len(_dataset(splits=["train"] * 200 + ["publictest"] * 80).split("val")) == 80


def test_folds_cover_every_face_once_and_never_split_a_subject():
    ds = _dataset(subjects=12)
    folds = kfold(ds, 4, seed=0)
    seen = np.concatenate([val for _, val in folds])
    assert sorted(seen.tolist()) == list(range(len(ds)))
    for train, val in folds:
        assert not set(ds.groups[train]) & set(ds.groups[val])
        assert len(np.intersect1d(train, val)) == 0
    sizes = [len(val) for _, val in folds]
    assert max(sizes) < 2 * min(sizes)


def test_folds_without_subjects_are_stratified():
    folds = kfold(_dataset(n_per_class=10), 5, seed=0)
    for _, val in folds:
        assert np.bincount(np.repeat(np.arange(7), 10)[val], minlength=7).tolist() == [2] * 7


@pytest.mark.parametrize("call, message", [
    (lambda: with_validation_split(_dataset(), 1.5), "expected a share of the training faces between 0 and 1"),
    (lambda: with_validation_split(_dataset(subjects=1), 0.2), "belong to 1 subject"),
    (lambda: with_validation_split(with_validation_split(_dataset(), 0.1), 0.1), "already has a val split"),
    (lambda: with_validation_split(_dataset(splits=["test"] * 280), 0.1), "has no train split"),
    (lambda: kfold(_dataset(subjects=3), 5), "a split by subject needs at least 5"),
    (lambda: kfold(_dataset(), 1), "expected at least 2"),
])
def test_impossible_splits_say_why(call, message):
    with pytest.raises(DataError, match=message):
        call()
