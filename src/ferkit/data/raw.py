"""What a format reader hands the loader: decoded arrays plus what was skipped, dropped and why.

Readers plan their faces as :class:`Item` records (which file, which split and label, which face box), hand
them to the shared decoder (``ferkit.data.readers.decode_faces``) and :func:`assemble` the result. Problems
with real data become :class:`Issue` records naming the file and line; the loader skips them, or fails under
``strict``. Rows a dataset's own rules leave out (FER+ rows without a face, AffectNet's non-expressions) are
not problems: they are counted in ``excluded``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ferkit.labels import canonical_order


@dataclass
class Issue:
    """A piece of real data that could not be used: skipped normally, fatal with strict=True."""

    id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.id}: {self.reason}"


@dataclass
class RawRead:
    images: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    sources: np.ndarray
    label_names: tuple[str, ...]
    junk_skipped: int = 0
    junk_examples: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    format: str = "fer2013"
    groups: np.ndarray | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    excluded: dict[str, int] = field(default_factory=dict)  # rows left out by the dataset's own rules

    @classmethod
    def empty(cls, label_names: tuple[str, ...], fmt: str) -> "RawRead":
        return cls(np.empty(0, np.uint8), np.empty(0, np.int64), np.empty(0, str), np.empty(0, str),
                   label_names, format=fmt)

    def skip_junk(self, rel: str) -> None:
        """Count an OS-litter or non-image file, keeping the first few names for the report."""
        self.junk_skipped += 1
        if len(self.junk_examples) < 5:
            self.junk_examples.append(rel)

    def exclude(self, reason: str, n: int = 1) -> None:
        self.excluded[reason] = self.excluded.get(reason, 0) + n


@dataclass
class Item:
    """One face to decode: ``name`` is the file inside the source, ``source_id`` what ferkit prints and label
    overrides name, ``where`` the label-file line that listed it (empty for class folders)."""

    name: str
    source_id: str
    split: str
    label: str  # canonical
    where: str = ""
    box: tuple[float, float, float, float] | None = None  # x, y, w, h in the image's pixels
    group: str | None = None
    extra: dict[str, float] | None = None


def issue_for(item: Item, reason: str) -> Issue:
    """Name the label-file line when one listed the image (and the image in the reason), else the image."""
    return Issue(item.where, f"{item.name}: {reason}") if item.where else Issue(item.source_id, reason)


def assemble(report: RawRead, items: list[Item], images: np.ndarray, reasons: list[str | None], *,
             label_names: tuple[str, ...] | None = None) -> RawRead:
    """Fill ``report`` with the decoded faces, recording each failure as an issue.

    ``images`` holds one row per item (failed rows are dropped here, in place, so a large array is never
    copied). ``label_names`` defaults to the classes present, in canonical order.
    """
    keep = [i for i, r in enumerate(reasons) if r is None]
    report.issues += [issue_for(items[i], r) for i, r in enumerate(reasons) if r is not None]
    images = _compact(images, keep)
    kept = [items[i] for i in keep]
    names = label_names or canonical_order(it.label for it in kept)
    index = {name: k for k, name in enumerate(names)}
    report.images = images
    report.label_names = tuple(names)
    report.labels = np.array([index[it.label] for it in kept], np.int64)
    report.splits = np.array([it.split for it in kept], dtype=str)
    report.sources = np.array([it.source_id for it in kept], dtype=str)
    if kept and all(it.group is not None for it in kept):
        report.groups = np.array([it.group for it in kept], dtype=str)
    keys = sorted({k for it in kept for k in (it.extra or {})})
    report.extras = {k: np.array([(it.extra or {}).get(k, np.nan) for it in kept], np.float32) for k in keys}
    return report


def _compact(images: np.ndarray, keep: list[int]) -> np.ndarray:
    """``images[keep]`` for an increasing ``keep``, moving rows down in place instead of copying the array."""
    if len(keep) == len(images):
        return images
    out = 0
    for run_start, run_len in _runs(keep):
        if run_start != out:
            images[out:out + run_len] = images[run_start:run_start + run_len]  # numpy handles the overlap
        out += run_len
    return images[:out]


def _runs(index: list[int]):
    """Consecutive runs in an increasing index list, as (start, length)."""
    start = prev = None
    for i in index:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            yield start, prev - start + 1
            start = prev = i
    if start is not None:
        yield start, prev - start + 1

