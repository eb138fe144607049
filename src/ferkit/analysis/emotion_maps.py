"""Where a model looks, per emotion, over a dataset split: the mean map of each method per true emotion.

    >>> from ferkit.analysis import explain_dataset
    >>> from ferkit.data import load_dataset
    >>> from ferkit.models.checkpoint import load_model
    >>> model, config = load_model("default")
    >>> result = explain_dataset(model, config, load_dataset("fer2013.zip"), split="publictest")
    >>> result.regions[0]         # {"emotion": "angry", "method": "gradcam", "n": 200, "upper": ..., ...}
    >>> result.save("explained/")  # summary.png, regions.csv, mean_maps.npz (what `ferkit explain --dataset` writes)

Each face's map explains its true emotion, so a column of the summary shows what the model finds evidence of
that emotion in, right or wrong. The heat shares use the halves of ``ferkit.transforms.occlusion``, so they
line up with an occlusion study's masks.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn

from ferkit.analysis.explain import explain, heat_shares, method_options
from ferkit.batching import iter_batches
from ferkit.data.dataset import FaceDataset
from ferkit.errors import FerkitError
from ferkit.models.config import ModelConfig

#: What ``explain_dataset`` (and ``ferkit explain --dataset``) computes unless told otherwise.
DATASET_METHODS: tuple[str, ...] = ("gradcam", "saliency", "occlusion")
PER_CLASS = 200  # faces per emotion, drawn at random with a fixed seed: enough for a stable mean map


@dataclass(frozen=True)
class DatasetFiles:
    summary: Path  # one page: mean face and mean map per method, one column per emotion
    table: Path  # regions.csv: heat shares per method and emotion
    maps: Path  # mean_maps.npz: the mean maps (E x H x W per method) and the emotion names


@dataclass
class DatasetExplanation:
    """Mean maps per true emotion over the faces of a split, with the faces they came from."""

    methods: list[str]
    emotions: list[str]  # emotions with at least one face, in the model's label order
    counts: list[int]  # faces explained per emotion
    mean_maps: dict[str, np.ndarray]  # method -> E x H x W float, at the model's input size
    mean_faces: np.ndarray  # E x H x W uint8: the average face of each emotion as the model sees it (gray)
    accuracy: float  # of the model's prediction on the unaugmented view, the one the maps explain
    arch: str
    dataset: str = ""  # the dataset's name
    split: str | None = None

    @property
    def n(self) -> int:
        return int(sum(self.counts))

    @property
    def regions(self) -> list[dict[str, Any]]:
        """Share of heat in the upper, lower, left and right (viewer's) halves, one row per method and emotion."""
        rows = []
        for method, maps in self.mean_maps.items():
            shares = heat_shares(maps)
            for j, emotion in enumerate(self.emotions):
                rows.append({"emotion": emotion, "method": method, "n": self.counts[j],
                             **{k: round(float(v[j]), 4) for k, v in shares.items()}})
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Plain data: what ``ferkit explain --dataset --json`` prints, files aside."""
        return {"split": self.split, "n": self.n, "accuracy": round(self.accuracy, 4), "methods": list(self.methods),
                "regions": self.regions}

    def save(self, out_dir: str | Path, *, title: str | None = None) -> DatasetFiles:
        """Write ``summary.png``, ``regions.csv`` and ``mean_maps.npz`` into ``out_dir`` (created if needed)."""
        from ferkit.plots.explain import save_summary_grid

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        where = " ".join(s for s in (self.dataset, self.split) if s)
        title = title or f"{self.arch} on {where}: mean maps per true emotion"
        summary = save_summary_grid(out / "summary.png", self.mean_maps, self.emotions, self.mean_faces,
                                    self.counts, title=title)
        rows = self.regions
        table = out / "regions.csv"
        with table.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        maps = out / "mean_maps.npz"
        np.savez_compressed(maps, emotions=np.array(self.emotions),
                            **{m: v.astype(np.float32) for m, v in self.mean_maps.items()})
        return DatasetFiles(summary, table, maps)


def explain_dataset(model: nn.Module, config: ModelConfig, dataset: FaceDataset,
                    methods: Sequence[str] = DATASET_METHODS, *, split: str | None = None,
                    per_class: int | None = PER_CLASS, seed: int = 0, device: str | torch.device = "cpu",
                    batch_size: int = 64, progress: bool = False, **options: Any) -> DatasetExplanation:
    """Mean map of each method per true emotion over ``dataset`` (or its ``split``).

    At most ``per_class`` faces per emotion (None or 0: all), drawn at random with ``seed``; classes of the
    dataset the model does not know (contempt for a 7-class model) are skipped. Each face's map explains its
    true emotion. ``options`` are the methods' own (``layer``, ``patch``, ``samples``, ...: see
    ``ferkit.analysis.explain.METHODS``); one that no chosen method takes is refused.
    """
    per_method = method_options(methods, options)  # refused before the faces are chosen
    if per_class is not None and per_class < 0:
        raise FerkitError(f"per_class must be 0 or None (all) or a positive number of faces per emotion, "
                          f"got {per_class}")
    ds = dataset.split(split) if split is not None else dataset
    labels = list(config.labels)
    # Dataset classes the model does not know (e.g. contempt for a 7-class model) cannot be explained.
    to_model = np.array([labels.index(n) if n in labels else -1 for n in ds.label_names])
    true = to_model[ds.labels]
    rng = np.random.default_rng(seed)
    chosen = []
    for k in range(len(labels)):
        idx = np.flatnonzero(true == k)
        if per_class and len(idx) > per_class:
            idx = np.sort(rng.choice(idx, per_class, replace=False))
        chosen.append(idx)
    index = np.concatenate(chosen)
    if not len(index):
        where = f"split {split!r}" if split is not None else "the dataset"
        raise FerkitError(f"{where} has no faces of the model's classes ({', '.join(labels)})")
    faces, targets = ds.images[index], true[index]
    counts = np.bincount(targets, minlength=len(labels))
    present = np.flatnonzero(counts)

    size = config.input_size
    mean_maps: dict[str, np.ndarray] = {}
    correct = 0
    for method, opts in per_method.items():
        e = explain(model, faces, config, method, targets, device=device, batch_size=batch_size, progress=progress,
                    **opts)
        correct = int((e.predicted == targets).sum())
        sums = np.zeros((len(labels), size, size))
        np.add.at(sums, targets, e.maps)
        mean_maps[method] = (sums / np.maximum(counts, 1)[:, None, None])[present]
    return DatasetExplanation(
        methods=list(per_method), emotions=[labels[k] for k in present], counts=[int(counts[k]) for k in present],
        mean_maps=mean_maps, mean_faces=_mean_faces(faces, targets, counts, config, batch_size)[present],
        accuracy=correct / len(index), arch=config.arch, dataset=ds.name, split=split,
    )


def _mean_faces(faces: np.ndarray, targets: np.ndarray, counts: np.ndarray, config: ModelConfig,
                batch_size: int) -> np.ndarray:
    """K x S x S uint8: the average face per class, gray, cropped and resized as the model sees it."""
    from ferkit.transforms.preprocess import match_channels, to_input, uint8_to_nchw

    size = config.input_size
    sums = torch.zeros(len(counts), size, size)
    for sl in iter_batches(len(faces), batch_size):
        x = to_input(match_channels(uint8_to_nchw(faces[sl]).float(), 1), config)[:, 0]
        sums.index_add_(0, torch.as_tensor(targets[sl]), x)
    mean = sums / torch.as_tensor(np.maximum(counts, 1), dtype=torch.float32).view(-1, 1, 1)
    return mean.round().clamp(0, 255).to(torch.uint8).numpy()
