"""The in-memory dataset every reader produces and every consumer (trainer, evaluator, studies) takes."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ferkit.errors import DataError

SPLITS = ("train", "publictest", "privatetest")
# Aliases from shared/docs/DESIGN.md section 3: val = publictest; test = every test image present.
SPLIT_ALIASES = {"val": ("publictest",), "test": ("publictest", "privatetest"), "all": SPLITS}


@dataclass
class FaceDataset:
    """Faces as uint8 N x H x W (gray) or N x H x W x 3 (RGB), with integer labels into ``label_names``."""

    images: np.ndarray
    labels: np.ndarray  # int64, N
    splits: np.ndarray  # str, N: one of SPLITS (or a dataset's own split names)
    sources: np.ndarray  # str, N: where each face came from, e.g. "train/happy/Training_10.jpg" or "csv:row 12"
    label_names: tuple[str, ...]
    name: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def available_splits(self) -> list[str]:
        present = set(np.unique(self.splits).tolist())
        ordered = [s for s in SPLITS if s in present]
        return ordered + sorted(present - set(SPLITS))

    def split(self, name: str) -> "FaceDataset":
        """The subset for a split name or alias ('val', 'test', 'all')."""
        wanted = SPLIT_ALIASES.get(name, (name,))
        mask = np.isin(self.splits, wanted)
        if not mask.any():
            raise DataError(
                f"dataset {self.name or ''} has no {name!r} split; it has: {', '.join(self.available_splits())}"
            )
        return self.subset(mask)

    def subset(self, index: np.ndarray) -> "FaceDataset":
        return FaceDataset(self.images[index], self.labels[index], self.splits[index], self.sources[index],
                           self.label_names, self.name)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts)}
