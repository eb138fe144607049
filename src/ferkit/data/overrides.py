"""Label overrides: a CSV of ``path,label`` rows that relabels images on load.

``path`` is the source id ferkit prints for an image (``train/happy/Training_10.jpg``, or ``csv:row 12`` for
the CSV release); ``label`` is any spelling ``ferkit.labels.canonical_label`` knows. A header row
``path,label`` is optional. Every row must match an image and a class of the dataset: a typo that silently
relabelled nothing would be worse than an error.
"""
from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from ferkit.data.dataset import FaceDataset
from ferkit.errors import DataError
from ferkit.labels import canonical_label

Overrides = Mapping[str, str]


def read_overrides(path: str | Path) -> dict[str, tuple[str, int]]:
    """{source id: (label as written, line number)} from a path,label CSV."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: label-override file not found; expected a CSV with rows path,label")
    out: dict[str, tuple[str, int]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for line, row in enumerate(csv.reader(fh), start=1):
            cells = [c.strip() for c in row]
            if not cells or not any(cells) or cells[0].startswith("#"):
                continue
            if line == 1 and [c.lower() for c in cells] == ["path", "label"]:
                continue
            if len(cells) != 2 or not all(cells):
                raise DataError(f"{path} line {line}: expected 2 columns path,label; found {row!r}")
            out[cells[0]] = (cells[1], line)
    return out


def apply_overrides(ds: FaceDataset, overrides: str | Path | Overrides) -> tuple[FaceDataset, int]:
    """A copy of ``ds`` with the overridden labels, and how many labels actually changed."""
    if isinstance(overrides, Mapping):
        where, rows = "label overrides", {k: (v, 0) for k, v in overrides.items()}
    else:
        where, rows = str(overrides), read_overrides(overrides)
    index = {s: i for i, s in enumerate(ds.sources.tolist())}
    labels = ds.labels.copy()
    for source, (name, line) in rows.items():
        at = f"{where} line {line}" if line else where
        if source not in index:
            example = ds.sources[0] if len(ds) else "train/happy/Training_10.jpg"
            raise DataError(f"{at}: no image {source!r} in dataset {ds.name}; paths are the source ids "
                            f"ferkit prints, e.g. {example}")
        try:
            label = canonical_label(name)
        except DataError as exc:
            raise DataError(f"{at}: {exc}") from None
        if label not in ds.label_names:
            raise DataError(f"{at}: label {name!r} is not a class of {ds.name}; "
                            f"expected one of {', '.join(ds.label_names)}")
        labels[index[source]] = ds.label_names.index(label)
    changed_rows = labels != ds.labels
    targets = ds.targets
    if targets is not None and changed_rows.any():  # a relabelled face's votes no longer hold
        targets = targets.copy()
        targets[changed_rows] = np.eye(len(ds.label_names), dtype=targets.dtype)[labels[changed_rows]]
    return replace(ds, labels=labels, targets=targets), int(np.count_nonzero(changed_rows))
