"""Validation splits and cross-validation folds for datasets that ship none: stratified by class, seeded,
and by subject where the dataset names them (``FaceDataset.groups``).

Frames of one CK+ sequence, or JAFFE's several takes of one face, are near-copies: a frame-level split puts
the same person on both sides and measures memory, not recognition. With groups, whole subjects go to one
side, chosen greedily (largest subjects first, seeded ties) so every side's class mix stays close to the
whole's. Without groups each class is shuffled and cut exactly.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ferkit.data.dataset import FaceDataset
from ferkit.errors import DataError


def with_validation_split(ds: FaceDataset, fraction: float, *, seed: int = 0) -> FaceDataset:
    """``ds`` with ``fraction`` of its ``train`` faces moved into a new ``val`` split."""
    if not 0 < fraction < 1:
        raise DataError(f"val_split {fraction}: expected a share of the training faces between 0 and 1, e.g. 0.15")
    if "val" in ds.available_splits():
        raise DataError(f"dataset {ds.name} already has a val split; drop --val-split or use its own")
    train = np.flatnonzero(ds.splits == "train")
    if not len(train):
        raise DataError(f"dataset {ds.name} has no train split to take a validation split from; it has: "
                        f"{', '.join(ds.available_splits())}")
    groups = None if ds.groups is None else ds.groups[train]
    side = assign(ds.labels[train], groups, np.array([1 - fraction, fraction]), seed, what="val_split")
    splits = ds.splits.astype(f"<U{max(5, ds.splits.dtype.itemsize // 4)}")
    splits[train[side == 1]] = "val"
    return replace(ds, splits=splits)


def kfold(ds: FaceDataset, k: int, *, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` (train index, validation index) pairs over ``ds``: each face is validated on exactly once, and a
    subject's faces share a fold."""
    if k < 2:
        raise DataError(f"folds {k}: expected at least 2")
    fold = assign(ds.labels, ds.groups, np.full(k, 1.0 / k), seed, what=f"{k} folds")
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def assign(labels: np.ndarray, groups: np.ndarray | None, shares: np.ndarray, seed: int,
           what: str = "split") -> np.ndarray:
    """Which part (0 .. len(shares) - 1) each face goes to, stratified by label, whole groups together."""
    rng = np.random.default_rng(seed)
    parts = len(shares)
    out = np.empty(len(labels), np.int64)
    classes = int(labels.max()) + 1 if len(labels) else 0
    if groups is None:
        # Each class shuffled and cut by the shares; the cut points rotate with the class so that rounding
        # does not always favour the same part.
        for c in range(classes):
            idx = rng.permutation(np.flatnonzero(labels == c))
            bounds = np.round(np.cumsum(np.roll(shares, -c % parts)) * len(idx)).astype(int)
            part = np.searchsorted(bounds, np.arange(len(idx)), side="right")
            out[idx] = (np.minimum(part, parts - 1) + c) % parts
        return out
    names, member = np.unique(groups, return_inverse=True)
    if len(names) < parts:
        raise DataError(f"{what}: the faces belong to {len(names)} subject(s); a split by subject needs at least "
                        f"{parts}")
    counts = np.zeros((len(names), classes))
    np.add.at(counts, (member, labels), 1)
    total = np.maximum(counts.sum(0), 1)
    target = shares[:, None] * counts.sum(0)[None, :]
    current = np.zeros_like(target)
    order = rng.permutation(len(names))
    order = order[np.argsort(-counts[order].sum(1), kind="stable")]
    part_of = np.empty(len(names), np.int64)
    for g in order:
        before = ((current - target) / total) ** 2
        after = ((current + counts[g] - target) / total) ** 2
        # Cost of placing g in each part, plus a pull towards the parts furthest below their size.
        cost = (after - before).sum(1) - 1e-9 * (target.sum(1) - current.sum(1))
        best = int(np.argmin(cost))
        part_of[g] = best
        current[best] += counts[g]
    empty = [p for p in range(parts) if not (part_of == p).any()]
    if empty:
        raise DataError(f"{what}: {len(names)} subject(s) are too few to give every part a subject; use a larger "
                        f"share or fewer folds")
    return part_of[member]
