"""One door in for datasets: ``load_dataset(path)`` finds the format, reads it through the cache, applies
label overrides and training-set cleaning, and returns a :class:`~ferkit.data.dataset.FaceDataset`.

``load_dataset_with_report`` returns the same dataset plus a :class:`LoadReport` saying where it came from
and what was skipped (junk files, corrupt images, bad CSV rows) and dropped. Policies:

* junk (``.DS_Store``, ``Thumbs.db``, ``README*``, ``__MACOSX/``, hidden or non-image files) is skipped and
  counted, strict or not;
* issues with real data (a corrupt or truncated image, a CSV row with a bad label or pixel count, an empty
  class folder) are logged and skipped, or raise :class:`~ferkit.errors.DataError` with ``strict=True``;
* layout errors (missing path, unknown layout or class folder, a zip entry escaping the archive) always raise.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from ferkit.data import cache as _cache
from ferkit.data.dataset import FaceDataset
from ferkit.data.fer2013 import SUPPORTED_LAYOUTS, Issue, RawRead, find_root, read_csv, read_image_tree
from ferkit.data.overrides import apply_overrides
from ferkit.data.quality import training_mask
from ferkit.data.readers import FolderSource, Listing, ZipSource, zip_fingerprint
from ferkit.errors import DataError
from ferkit.paths import sha256_file

log = logging.getLogger(__name__)


@dataclass
class LoadReport:
    """How a dataset was read. ``issues`` were skipped (or made the load fail under strict)."""

    path: str
    layout: str  # "folder", "zip", "csv" or "zip+csv"
    n_images: int = 0
    from_cache: bool = False
    cache_file: str | None = None
    seconds: float = 0.0
    junk_skipped: int = 0
    junk_examples: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    labels_overridden: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def load_dataset(
    path: str | Path,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    label_overrides: str | Path | Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
) -> FaceDataset:
    """FER2013 from a Kaggle folder, the same as a .zip, or fer2013.csv.

    ``drop`` removes ``"duplicates"`` (all but the first copy), ``"leaks"`` (train copies of test images)
    and/or ``"blanks"`` from the train split only. ``label_overrides`` is a ``path,label`` CSV (or a dict).
    """
    return load_dataset_with_report(path, cache=cache, cache_dir=cache_dir, strict=strict,
                                    label_overrides=label_overrides, drop=drop)[0]


def load_dataset_with_report(
    path: str | Path,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    label_overrides: str | Path | Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
) -> tuple[FaceDataset, LoadReport]:
    """:func:`load_dataset` plus the :class:`LoadReport` (skipped junk, issues, cache use, drops)."""
    start = time.perf_counter()
    path = Path(path).expanduser()
    raw, report = _read_cached(path, cache, Path(cache_dir) if cache_dir else None)
    ds = FaceDataset(raw.images, raw.labels, raw.splits, raw.sources, tuple(raw.label_names), "fer2013")

    if raw.junk_skipped:
        log.info("%s: skipped %d junk file(s) (e.g. %s)", path, raw.junk_skipped, ", ".join(raw.junk_examples))
    for message in raw.warnings:
        log.warning("%s: %s", path, message)
    if raw.issues:
        shown = "; ".join(str(i) for i in raw.issues[:10])
        more = f"; and {len(raw.issues) - 10} more" if len(raw.issues) > 10 else ""
        if strict:
            raise DataError(f"{path}: {len(raw.issues)} unusable item(s) (strict mode): {shown}{more}")
        log.warning("%s: skipped %d unusable item(s): %s%s", path, len(raw.issues), shown, more)
    if not len(ds):
        raise DataError(f"{path}: no usable images found; {SUPPORTED_LAYOUTS}")

    if label_overrides is not None:
        ds, report.labels_overridden = apply_overrides(ds, label_overrides)
    drop = tuple(drop)
    if drop:
        keep, report.dropped = training_mask(ds, drop)
        ds = ds.subset(keep)
        log.info("%s: dropped from train: %s", path, report.dropped)
    report.n_images = len(ds)
    report.seconds = round(time.perf_counter() - start, 3)
    return ds, report


def _read_cached(path: Path, use_cache: bool, cache_dir: Path | None) -> tuple[RawRead, LoadReport]:
    """Fingerprint the source cheaply, then load the cache or read, decode and cache it."""
    where = str(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; {SUPPORTED_LAYOUTS}")
    suffix = path.suffix.lower()
    if path.is_dir():
        folder = FolderSource(path)
        listing = folder.list()
        kind, root = find_root(listing, where)
        if kind == "csv":  # a fer2013.csv inside a folder: key on its bytes, not the folder's mtimes
            fingerprint = sha256_file(path / root)
            read = partial(_read_csv_file, path / root)
        else:
            kind, fingerprint = "folder", folder.fingerprint()
            read = partial(_read_folder, folder, listing, root)
    elif suffix == ".zip":
        # The zip's layout is decided from its listing only on a cache miss: the central-directory hash
        # already covers every name, so it need not be part of the key.
        kind, root, fingerprint = "zip", "", zip_fingerprint(path)
        read = partial(_read_zip, path)
    elif suffix == ".csv":
        kind, root, fingerprint = "csv", "", sha256_file(path)
        read = partial(_read_csv_file, path)
    else:
        raise DataError(f"{path}: unrecognised dataset file; {SUPPORTED_LAYOUTS}; found a "
                        f"{path.suffix or 'extension-less'} file (expected a folder, a .zip or a .csv)")

    key = hashlib.blake2b(f"{_cache.READER_VERSION}|{kind}|{root}|{fingerprint}".encode(),
                          digest_size=16).hexdigest()
    file = _cache.cache_path(cache_dir or _cache_root(), kind, key) if use_cache else None
    hit = _cache.load(file) if file else None
    if hit is not None:
        arrays, meta = hit
        raw = RawRead(**arrays, label_names=tuple(meta["label_names"]), junk_skipped=meta["junk_skipped"],
                      junk_examples=meta["junk_examples"], issues=[Issue(*i) for i in meta["issues"]],
                      warnings=meta["warnings"])
        layout = meta["layout"]
        log.debug("%s: loaded from cache %s", path, file)
    else:
        start = time.perf_counter()
        layout, raw = read()
        log.info("%s: decoded %d images in %.1f s", path, len(raw.labels), time.perf_counter() - start)
        if file:
            _cache.save(file, {"images": raw.images, "labels": raw.labels, "splits": raw.splits,
                               "sources": raw.sources},
                        {"layout": layout, "label_names": list(raw.label_names), "junk_skipped": raw.junk_skipped,
                         "junk_examples": raw.junk_examples, "issues": [[i.id, i.reason] for i in raw.issues],
                         "warnings": raw.warnings, "source": where})
    report = LoadReport(where, layout, from_cache=hit is not None, cache_file=str(file) if file else None,
                        junk_skipped=raw.junk_skipped, junk_examples=raw.junk_examples, issues=raw.issues,
                        warnings=raw.warnings)
    return raw, report


# Each reader returns (layout, raw read); the layout is stored in the cache with the arrays.
def _read_folder(folder: FolderSource, listing: Listing, root: str) -> tuple[str, RawRead]:
    return "folder", read_image_tree(folder, listing, root, str(folder.root))


def _read_zip(path: Path) -> tuple[str, RawRead]:
    source = ZipSource(path)
    try:
        listing = source.list()
        kind, root = find_root(listing, str(path))
        if kind == "csv":
            with source.open_text(root) as fh:
                return "zip+csv", _decode_text_errors(read_csv, fh, f"{path}:{root}")
        return "zip", read_image_tree(source, listing, root, str(path))
    finally:
        source.close()


def _read_csv_file(path: Path) -> tuple[str, RawRead]:
    with open(path, newline="", encoding="utf-8") as fh:
        return "csv", _decode_text_errors(read_csv, fh, str(path))


def _decode_text_errors(reader, stream, where: str) -> RawRead:
    try:
        return reader(stream, where)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: expected a UTF-8 text CSV; found undecodable bytes ({exc.reason})") from None


def _cache_root() -> Path:
    from ferkit.paths import cache_dir

    return cache_dir("datasets")
