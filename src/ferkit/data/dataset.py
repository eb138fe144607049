"""The in-memory dataset every reader produces and every consumer (trainer, evaluator, studies) takes."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ferkit.errors import DataError

SPLITS = ("train", "publictest", "privatetest")
# The order splits are listed in; names beyond these (a CSV's own) follow alphabetically.
SPLIT_ORDER = ("train", "val", "publictest", "privatetest", "test")
# Aliases from shared/docs/DESIGN.md section 3: val = publictest; test = every test image present. A dataset
# with its own val/test split (RAF-DB, AffectNet, a class-folder tree) answers to the name itself.
SPLIT_ALIASES = {"val": ("publictest",), "test": ("publictest", "privatetest")}


@dataclass
class FaceDataset:
    """Faces as uint8 N x H x W (gray) or N x H x W x 3 (RGB), with integer labels into ``label_names``.

    Optional per-image columns, all sliced along with the faces:

    * ``groups``: who is in the image (a subject id: CK+ ``S005``, JAFFE ``KA``), so splits and folds keep a
      person on one side; None where a dataset does not say.
    * ``targets``: N x len(label_names) float32 rows summing to 1, the soft labels of a vote-based dataset
      (FER+), with ``target_mode`` saying how its authors train on them: ``crossentropy`` (the rows are the
      target), ``probability`` (draw a one-hot target from each row every epoch) or ``multi_target`` (every
      class with a share counts as right). ``labels`` is then the row's top class.
    * ``extras``: other numeric columns a dataset ships, e.g. AffectNet's ``valence`` and ``arousal``.
    """

    images: np.ndarray
    labels: np.ndarray  # int64, N
    splits: np.ndarray  # str, N: one of SPLITS (or a dataset's own split names)
    sources: np.ndarray  # str, N: where each face came from, e.g. "train/happy/Training_10.jpg" or "csv:row 12"
    label_names: tuple[str, ...]
    name: str = ""
    groups: np.ndarray | None = None  # str, N
    targets: np.ndarray | None = None  # float32, N x K
    target_mode: str = ""
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        """1 for gray faces, 3 for RGB."""
        return 3 if self.images.ndim == 4 else 1

    def available_splits(self) -> list[str]:
        present = set(np.unique(self.splits).tolist())
        ordered = [s for s in SPLIT_ORDER if s in present]
        return ordered + sorted(present - set(SPLIT_ORDER))

    def evaluation_split(self) -> str:
        """The split a model is scored on: FER2013's publictest, else a test split, else val, else every face
        (CK+, JAFFE: a model trained elsewhere is evaluated on all of them)."""
        present = set(self.splits.tolist())
        return next((s for s in ("publictest", "test", "val") if s in present), "all")

    def split(self, name: str) -> "FaceDataset":
        """The subset for a split name or alias ('val', 'test'; 'all' is every image)."""
        if name == "all":
            return self
        # A split of that very name wins over the alias: a FER2013 with a carved-out val keeps publictest apart.
        wanted = (name,) if name in self.splits else SPLIT_ALIASES.get(name, (name,))
        mask = np.isin(self.splits, wanted)
        if not mask.any():
            raise DataError(
                f"dataset {self.name or ''} has no {name!r} split; it has: {', '.join(self.available_splits())}"
            )
        return self.subset(mask)

    def subset(self, index: np.ndarray) -> "FaceDataset":
        if isinstance(self.images, np.memmap):
            # Faces mapped from the cache: a contiguous run (a split, as readers write them) stays a view of the
            # file instead of a copy in memory.
            index = _as_slice(index)
        return replace(
            self, images=self.images[index], labels=self.labels[index], splits=self.splits[index],
            sources=self.sources[index], groups=None if self.groups is None else self.groups[index],
            targets=None if self.targets is None else self.targets[index],
            extras={k: v[index] for k, v in self.extras.items()},
        )

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts)}


def _as_slice(index: np.ndarray):
    """``index`` (a boolean mask or increasing positions) as a slice when it is one contiguous run."""
    index = np.asarray(index)
    positions = np.flatnonzero(index) if index.dtype == bool else index
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions) and (np.diff(positions) == 1).all():
        return slice(int(positions[0]), int(positions[-1]) + 1)
    return index
