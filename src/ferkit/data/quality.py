"""Dataset quality: class balance per split, exact duplicates, cross-split leaks and blank images.

Duplicates are exact: images whose decoded pixel bytes hash the same. Near-duplicates (re-encoded or
shifted copies) need a perceptual hash and a threshold to argue about; exact copies need neither, and they
are what makes published FER2013 numbers optimistic (the same face in train and test).
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from ferkit.batching import iter_batches
from ferkit.data.dataset import SPLITS, FaceDataset
from ferkit.errors import DataError

# Per-image pixel standard deviation on FER2013 (32,298 images): 12 frames are exactly 0 (flat black or
# gray), one is 0.65 (flat gray with JPEG noise), the next is 4.1 (a very dark but real face) and 99.8% are
# above 15. A threshold of 3 sits in that gap: it catches flat frames that survived JPEG re-encoding and
# keeps every low-contrast real face.
BLANK_STD = 3.0
DROP_CHOICES = ("duplicates", "leaks", "blanks")
EXAMPLES = 5


@dataclass
class SplitCounts:
    n: int
    counts: dict[str, int]
    percent: dict[str, float]


@dataclass
class QualityReport:
    """Everything ``ferkit data inspect`` shows; ``to_dict()`` is its --json output."""

    n: int
    label_names: list[str]
    splits: dict[str, SplitCounts]
    # Within one split: groups of source ids with identical pixels.
    duplicate_groups: list[list[str]] = field(default_factory=list)
    # Across splits: groups whose copies sit in more than one split, as {split: [source ids]}.
    leak_groups: list[dict[str, list[str]]] = field(default_factory=list)
    blanks: list[str] = field(default_factory=list)
    blank_std: float = BLANK_STD
    # Identical pixels, different labels: one of the labels is wrong.
    label_conflicts: int = 0
    # Images with at least one exact copy anywhere in the dataset (the figure cleaning papers quote).
    images_with_copies: int = 0

    @property
    def duplicate_images(self) -> int:
        """Copies beyond the first of each group: what dropping duplicates removes."""
        return sum(len(g) - 1 for g in self.duplicate_groups)

    @property
    def leaked_train_images(self) -> int:
        return sum(len(g.get("train", [])) for g in self.leak_groups)

    def to_dict(self, examples: int = EXAMPLES) -> dict:
        return {
            "n": self.n,
            "labels": self.label_names,
            "splits": {k: asdict(v) for k, v in self.splits.items()},
            "duplicates": {"groups": len(self.duplicate_groups), "images": self.duplicate_images,
                           "images_with_copies": self.images_with_copies,
                           "examples": self.duplicate_groups[:examples]},
            "leaks": {"groups": len(self.leak_groups), "train_images": self.leaked_train_images,
                      "examples": self.leak_groups[:examples]},
            "blanks": {"count": len(self.blanks), "std_below": self.blank_std,
                       "examples": self.blanks[:examples]},
            "label_conflicts": self.label_conflicts,
        }


def pixel_hashes(images: np.ndarray) -> list[bytes]:
    flat = np.ascontiguousarray(images).reshape(len(images), -1)
    return [hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat]


def blank_mask(images: np.ndarray, threshold: float = BLANK_STD) -> np.ndarray:
    flat = images.reshape(len(images), -1)
    # Chunked so the float copy stays small on big datasets; float32 is plenty for a threshold of a few levels.
    stds = [flat[sl].std(axis=1, dtype=np.float32) for sl in iter_batches(len(flat), 4096)]
    return np.concatenate(stds) < threshold if stds else np.zeros(0, bool)


def _groups(hashes: list[bytes]) -> list[list[int]]:
    by_hash: dict[bytes, list[int]] = defaultdict(list)
    for i, h in enumerate(hashes):
        by_hash[h].append(i)
    return [g for g in by_hash.values() if len(g) > 1]


def _ordered_splits(ds: FaceDataset) -> list[str]:
    present = set(ds.splits.tolist())
    return [s for s in SPLITS if s in present] + sorted(present - set(SPLITS))


def class_table(ds: FaceDataset) -> dict[str, SplitCounts]:
    table = {}
    for split in _ordered_splits(ds):
        labels = ds.labels[ds.splits == split]
        counts = np.bincount(labels, minlength=len(ds.label_names))
        n = int(counts.sum())
        table[split] = SplitCounts(
            n, {k: int(c) for k, c in zip(ds.label_names, counts)},
            {k: round(100.0 * c / n, 2) if n else 0.0 for k, c in zip(ds.label_names, counts)},
        )
    return table


def quality_report(ds: FaceDataset, blank_std: float = BLANK_STD) -> QualityReport:
    hashes = pixel_hashes(ds.images)
    report = QualityReport(len(ds), list(ds.label_names), class_table(ds), blank_std=blank_std)
    order = list(report.splits)
    for group in _groups(hashes):
        report.images_with_copies += len(group)
        if len(set(ds.labels[group].tolist())) > 1:
            report.label_conflicts += 1
        by_split: dict[str, list[str]] = defaultdict(list)
        for i in group:
            by_split[str(ds.splits[i])].append(str(ds.sources[i]))
        report.duplicate_groups += [ids for ids in by_split.values() if len(ids) > 1]
        if len(by_split) > 1:
            report.leak_groups.append({s: by_split[s] for s in order if s in by_split})
    report.blanks = ds.sources[blank_mask(ds.images, blank_std)].tolist()
    return report


def training_mask(ds: FaceDataset, drop: Iterable[str], blank_std: float = BLANK_STD) -> tuple[np.ndarray, dict]:
    """Which images to keep, dropping only from the train split (test sets are never edited), and how many
    each rule removed. Duplicates keep the first copy; leaks drop every train copy of a test image."""
    drop = tuple(drop)
    unknown = sorted(set(drop) - set(DROP_CHOICES))
    if unknown:
        raise DataError(f"unknown drop option(s) {', '.join(unknown)}; expected any of {', '.join(DROP_CHOICES)}")
    is_train = ds.splits == "train"
    keep = np.ones(len(ds), bool)
    dropped: dict[str, int] = {}
    if "duplicates" in drop or "leaks" in drop:
        hashes = pixel_hashes(ds.images)
        for group in _groups(hashes):
            train = [i for i in group if is_train[i]]
            if "leaks" in drop and len(train) < len(group):
                dropped["leaks"] = dropped.get("leaks", 0) + int(keep[train].sum())
                keep[train] = False
            elif "duplicates" in drop and len(train) > 1:
                dropped["duplicates"] = dropped.get("duplicates", 0) + int(keep[train[1:]].sum())
                keep[train[1:]] = False
    if "blanks" in drop:
        blanks = blank_mask(ds.images, blank_std) & is_train & keep
        dropped["blanks"] = int(blanks.sum())
        keep &= ~blanks
    return keep, {k: dropped.get(k, 0) for k in drop}
