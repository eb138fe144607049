"""One door in for datasets: ``load_dataset(path)`` finds the format, reads it through the cache, applies
the dataset's label rules, label overrides, training-set cleaning and a validation split, and returns a
:class:`~ferkit.data.dataset.FaceDataset`.

``load_dataset_with_report`` returns the same dataset plus a :class:`LoadReport` saying where it came from
and what was skipped (junk files, corrupt images, bad rows), excluded and dropped. Policies:

* junk (``.DS_Store``, ``Thumbs.db``, ``README*``, ``__MACOSX/``, hidden or non-image files) is skipped and
  counted, strict or not;
* issues with real data (a corrupt or truncated image, a label-file row with a bad code, a missing image or a
  face box outside its image, an empty class folder) are logged and skipped, each naming its file and line,
  or raise :class:`~ferkit.errors.DataError` with ``strict=True``;
* rows a dataset's own rules leave out (FER+ faces without a majority, AffectNet's non-expressions) are
  counted in ``excluded``: they are the dataset as published, not problems;
* layout errors (missing path, unknown layout or class folder, a mix of layouts, a zip entry escaping the
  archive) always raise.
"""
from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from ferkit.data import cache as _cache
from ferkit.data.context import ReadContext
from ferkit.data.dataset import FaceDataset
from ferkit.data.detect import SUPPORTED_LAYOUTS, Plan, detect, header, is_fer2013_header
from ferkit.data.fer2013 import read_csv, read_image_tree
from ferkit.data.options import ReadOptions, parse_classes
from ferkit.data.overrides import apply_overrides
from ferkit.data.quality import training_mask
from ferkit.data.raw import Issue, RawRead
from ferkit.data.readers import FolderSource, ZipSource, zip_fingerprint
from ferkit.errors import DataError
from ferkit.paths import sha256_file

log = logging.getLogger(__name__)

#: What each format is called in messages and tables.
TITLES = {"fer2013": "FER2013", "ferplus": "FER+", "rafdb": "RAF-DB", "affectnet": "AffectNet", "ckplus": "CK+",
          "jaffe": "JAFFE", "expw": "ExpW", "folders": "class folders", "csv": "CSV"}


@dataclass
class LoadReport:
    """How a dataset was read. ``issues`` were skipped (or made the load fail under strict)."""

    path: str
    layout: str  # where the data sits: "folder", "zip", "csv" or "zip+csv"
    format: str = "fer2013"  # which dataset: fer2013, ferplus, rafdb, affectnet, ckplus, jaffe, expw, folders, csv
    n_images: int = 0
    from_cache: bool = False
    cache_file: str | None = None
    seconds: float = 0.0
    junk_skipped: int = 0
    junk_examples: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    excluded: dict[str, int] = field(default_factory=dict)  # left out by the dataset's rules, by reason
    labels_overridden: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # removed by drop=(...) from train
    image_shape: list[int] = field(default_factory=list)  # H, W[, 3] of each face
    subjects: int = 0  # distinct subjects when the dataset names them (CK+, JAFFE)
    label_mode: str = ""  # FER+
    val_split: float = 0.0
    pca: dict = field(default_factory=dict)  # variance kept, components per channel, stored share of the bytes

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
    **options,
) -> FaceDataset:
    """Any supported dataset: FER2013 (Kaggle folder, .zip or fer2013.csv), FER+, RAF-DB, AffectNet, CK+,
    JAFFE, ExpW, a class-folder tree or a path,label CSV, as a folder or a .zip. See
    :func:`load_dataset_with_report` for the options.
    """
    return load_dataset_with_report(path, cache=cache, cache_dir=cache_dir, strict=strict,
                                    label_overrides=label_overrides, drop=drop, **options)[0]


def load_dataset_with_report(
    path: str | Path,
    *,
    cache: bool = True,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    label_overrides: str | Path | Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    label_mode: str | None = None,
    classes: int | str | Iterable[str] | None = None,
    val_split: float | None = None,
    seed: int = 0,
    pca: float | None = None,
    progress: bool = False,
    **options,
) -> tuple[FaceDataset, LoadReport]:
    """:func:`load_dataset` plus the :class:`LoadReport` (skipped junk, issues, exclusions, cache use, drops).

    Reading options (each set has its own cache): ``format`` (auto-detected), ``size`` (side of the cached
    faces), ``color`` (auto, gray, rgb), ``variant`` (RAF-DB aligned or original), ``emotion_frames`` and
    ``neutral_frames`` (CK+), ``columns`` and ``codes`` (a generic CSV or numeric class folders),
    ``fer2013_csv`` (FER+); see :class:`~ferkit.data.options.ReadOptions`.

    After the cache: ``label_mode`` turns FER+ votes into labels (majority, probability, crossentropy,
    multi_target); ``classes`` keeps 7 (no contempt), 8 or the named classes; ``label_overrides`` is a
    ``path,label`` CSV (or a dict); ``drop`` removes ``"duplicates"``, ``"leaks"`` and/or ``"blanks"`` from
    train; ``val_split`` moves that share of train (stratified, by subject where known, seeded by ``seed``)
    into a ``val`` split; ``pca`` (e.g. 0.95) rebuilds the faces from the principal components that keep that
    share of each channel's variance, fitted on train and stored beside the cache (``ferkit.data.pca``).
    """
    start = time.perf_counter()
    path = Path(path).expanduser()
    opts = ReadOptions(**options)
    raw, report = _read_cached(path, opts, cache, Path(cache_dir) if cache_dir else None, progress)
    ds = FaceDataset(raw.images, raw.labels, raw.splits, raw.sources, tuple(raw.label_names), raw.format,
                     groups=raw.groups, extras=dict(raw.extras))

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

    if ds.name == "ferplus":
        from ferkit.data.ferplus import apply_label_mode

        report.label_mode = label_mode or "majority"
        ds, excluded = apply_label_mode(ds, report.label_mode)
        _merge(report.excluded, excluded)
    elif label_mode:
        raise DataError(f"label_mode {label_mode!r} applies to FER+ (fer2013new.csv) only; {path} is "
                        f"{TITLES.get(ds.name, ds.name)}")
    wanted = parse_classes(classes)
    if wanted is not None:
        ds, removed = restrict_classes(ds, wanted)
        if removed:
            report.excluded[f"classes outside --classes {len(wanted)}"] = removed
    if not len(ds):
        raise DataError(f"{path}: no faces left after the label rules; excluded: {report.excluded}")

    if label_overrides is not None:
        ds, report.labels_overridden = apply_overrides(ds, label_overrides)
    drop = tuple(drop)
    if drop:
        keep, report.dropped = training_mask(ds, drop)
        ds = ds.subset(keep)
        log.info("%s: dropped from train: %s", path, report.dropped)
    if val_split:
        from ferkit.data.splits import with_validation_split

        ds = with_validation_split(ds, val_split, seed=seed)
        report.val_split = float(val_split)
    if pca:
        from ferkit.data.pca import compress_dataset

        store = None
        if report.cache_file:
            # Keyed by exactly these faces: label rules, drops and splits change which ones there are.
            key = hashlib.blake2b("\n".join(ds.sources.tolist()).encode() + f"|{pca}|{seed}".encode(),
                                  digest_size=8).hexdigest()
            store = Path(report.cache_file).with_name(f"{Path(report.cache_file).stem}-pca-{key}.npz")
        ds, report.pca = compress_dataset(ds, float(pca), store, seed=seed)
    report.n_images = len(ds)
    report.image_shape = list(ds.images.shape[1:])
    report.subjects = len(np.unique(ds.groups)) if ds.groups is not None else 0
    report.seconds = round(time.perf_counter() - start, 3)
    return ds, report


def restrict_classes(ds: FaceDataset, names: tuple[str, ...]) -> tuple[FaceDataset, int]:
    """Only the faces of ``names`` (canonical), relabelled onto them; soft targets lose the other columns."""
    missing = [n for n in names if n not in ds.label_names]
    if missing:
        raise DataError(f"classes: {TITLES.get(ds.name, ds.name)} has no {', '.join(missing)} class; it has "
                        f"{', '.join(ds.label_names)}")
    columns = [ds.label_names.index(n) for n in names]
    keep = np.isin(ds.labels, columns)
    targets = None
    if ds.targets is not None:
        targets = ds.targets[:, columns]
        mass = targets.sum(1, keepdims=True)
        keep &= mass[:, 0] > 0
        targets = targets / np.maximum(mass, 1e-12)
    remap = np.full(len(ds.label_names), -1, np.int64)
    remap[columns] = np.arange(len(columns))
    out = ds.subset(keep)
    out = replace(out, labels=remap[out.labels], label_names=tuple(names),
                  targets=None if targets is None else targets[keep].astype(np.float32))
    return out, int((~keep).sum())


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for k, v in more.items():
        into[k] = into.get(k, 0) + v


# ---------------------------------------------------------------------------------------------------------------
# Source -> plan -> cached raw read


def _read_cached(path: Path, opts: ReadOptions, use_cache: bool, cache_dir: Path | None,
                 progress: bool) -> tuple[RawRead, LoadReport]:
    """Fingerprint the source cheaply, then load the cache or read, decode and cache it."""
    where = str(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder; {SUPPORTED_LAYOUTS}")
    kind, root, fingerprint, read = _plan_source(path, opts, progress)
    if opts.fer2013_csv and Path(opts.fer2013_csv).expanduser().is_file():
        fingerprint += sha256_file(Path(opts.fer2013_csv).expanduser())
    key = hashlib.blake2b(f"{_cache.READER_VERSION}|{kind}|{root}|{fingerprint}|{opts.key()}".encode(),
                          digest_size=16).hexdigest()
    file = _cache.cache_path(cache_dir or _cache_root(), kind, key) if use_cache else None
    spill = _cache.Spill(file) if file else None
    hit = _cache.load(file) if file else None
    if hit is not None:
        arrays, meta = hit
        raw = RawRead(arrays["images"], arrays["labels"], arrays["splits"], arrays["sources"],
                      label_names=tuple(meta["label_names"]), junk_skipped=meta["junk_skipped"],
                      junk_examples=meta["junk_examples"], issues=[Issue(*i) for i in meta["issues"]],
                      warnings=meta["warnings"], format=meta.get("format", "fer2013"),
                      groups=arrays.get("groups"), excluded=meta.get("excluded", {}),
                      extras={k[len("extra_"):]: v for k, v in arrays.items() if k.startswith("extra_")})
        layout = meta["layout"]
        log.debug("%s: loaded from cache %s", path, file)
    else:
        start = time.perf_counter()
        layout, raw = read(spill=spill)
        log.info("%s: decoded %d images in %.1f s", path, len(raw.labels), time.perf_counter() - start)
        if file:
            arrays = {"images": raw.images, "labels": raw.labels, "splits": raw.splits, "sources": raw.sources}
            if raw.groups is not None:
                arrays["groups"] = raw.groups
            arrays.update({f"extra_{k}": v for k, v in raw.extras.items()})
            mapped = spill.holds(raw.images)
            _cache.save(file, arrays,
                        {"layout": layout, "format": raw.format, "label_names": list(raw.label_names),
                         "junk_skipped": raw.junk_skipped, "junk_examples": raw.junk_examples,
                         "issues": [[i.id, i.reason] for i in raw.issues], "warnings": raw.warnings,
                         "excluded": raw.excluded, "source": where, "options": opts.to_dict()}, spill=spill)
            if mapped:  # from now on read the faces through the finished file, read-only
                raw.images = _cache.load_faces(spill.final, len(raw.images))
    report = LoadReport(where, layout, raw.format, from_cache=hit is not None,
                        cache_file=str(file) if file else None, junk_skipped=raw.junk_skipped,
                        junk_examples=raw.junk_examples, issues=raw.issues, warnings=raw.warnings,
                        excluded=dict(raw.excluded))
    return raw, report


def _plan_source(path: Path, opts: ReadOptions, progress: bool):
    """(kind, root, fingerprint, read): what the cache key is made of, and how to read on a miss."""
    suffix = path.suffix.lower()
    if path.is_dir():
        folder = FolderSource(path)
        listing = folder.list()
        plan = detect(folder, listing, str(path), opts.format, opts.codes)
        if plan.format == "fer2013" and plan.files:  # fer2013.csv in a folder: key on its bytes, not the mtimes
            name = plan.files[0]
            return "csv", name, sha256_file(path / name), partial(_read_csv_file, path / name, opts)
        ctx = ReadContext(folder, listing, plan.root, str(path), opts, progress)
        return "folder", plan.root, folder.fingerprint(), partial(_read_plan, ctx, plan, "folder")
    if suffix == ".zip":
        # The zip's layout is decided from its listing only on a cache miss: the central-directory hash
        # already covers every name, so it need not be part of the key.
        return "zip", "", zip_fingerprint(path), partial(_read_zip, path, opts, progress)
    if suffix == ".csv":
        cells = header(FolderSource(path.parent), path.name)
        if is_fer2013_header(cells) or not cells or _is_fer2013_name(path.name):
            return "csv", "", sha256_file(path), partial(_read_csv_file, path, opts)
        return _plan_file(path, opts, progress, _file_format(path, cells))
    if path.name in ("label.lst", "list_patition_label.txt"):
        return _plan_file(path, opts, progress, "expw" if path.name == "label.lst" else "rafdb")
    raise DataError(f"{path}: unrecognised dataset file; {SUPPORTED_LAYOUTS}; found a "
                    f"{path.suffix or 'extension-less'} file (expected a folder, a .zip or a .csv)")


def _is_fer2013_name(name: str) -> bool:
    return "fer2013" in name.lower() and name.lower() != "fer2013new.csv"


def _file_format(path: Path, cells: list[str]) -> str:
    from ferkit.data.affectnet import has_header

    if path.name.lower() == "fer2013new.csv":
        return "ferplus"
    return "affectnet" if has_header(cells) else "csv"


def _plan_file(path: Path, opts: ReadOptions, progress: bool, fmt: str):
    """A label file given by itself: the dataset is the folder its images are found from."""
    # AffectNet keeps its lists in Manually_Annotated_file_lists/ beside Manually_Annotated_Images/, ExpW its
    # label.lst in label/ beside image/, RAF-DB in EmoLabel/ beside Image/.
    up = path.parent.name.lower() in ("manually_annotated_file_lists", "label", "emolabel")
    base = path.parent.parent if up else path.parent
    folder = FolderSource(base)
    listing = folder.list()
    rel = path.relative_to(base).as_posix()
    plan = Plan(fmt, "", [rel], marker=rel)
    ctx = ReadContext(folder, listing, "", str(path), opts, progress)
    return "folder", rel, folder.fingerprint(), partial(_read_plan, ctx, plan, "folder")


def _read_plan(ctx: ReadContext, plan: Plan, layout: str, spill=None) -> tuple[str, RawRead]:
    from ferkit.data import affectnet, ckplus, csvfile, expw, ferplus, folders, jaffe, rafdb

    ctx.root, ctx.spill = plan.root, spill
    files = [ctx.rel(f) for f in plan.files]
    if plan.format == "fer2013":
        if files:  # fer2013.csv inside a zip
            with ctx.source.open_text(plan.files[0]) as fh:
                raw = _decode_text_errors(read_csv, fh, f"{ctx.where}:{plan.files[0]}")
            raw = _resized(raw, ctx.options)
            return layout + "+csv", raw
        return layout, _resized(read_image_tree(ctx.source, ctx.listing, plan.root, ctx.where), ctx.options)
    readers = {
        "ferplus": lambda: ferplus.read(ctx, files[0]),
        "rafdb": lambda: rafdb.read(ctx),
        "affectnet": lambda: affectnet.read(ctx, files),
        "ckplus": lambda: ckplus.read(ctx),
        "expw": lambda: expw.read(ctx, files[0]),
        "jaffe": lambda: jaffe.read(ctx),
        "folders": lambda: folders.read(ctx, plan.has_splits),
        "csv": lambda: csvfile.read(ctx, files[0]),
    }
    raw = readers[plan.format]()
    if plan.format == "ferplus":
        raw = _resized(raw, ctx.options)
    return layout, raw


def _resized(raw: RawRead, opts: ReadOptions) -> RawRead:
    """FER2013's 48x48 gray faces at the chosen size and colour (they are decoded at their own)."""
    import cv2

    if opts.size and raw.images.shape[1:3] != (opts.size, opts.size) and len(raw.images):
        interp = cv2.INTER_AREA if opts.size < raw.images.shape[1] else cv2.INTER_LINEAR
        raw.images = np.stack([cv2.resize(img, (opts.size, opts.size), interpolation=interp) for img in raw.images])
    if opts.color == "rgb" and raw.images.ndim == 3:
        raw.images = np.repeat(raw.images[..., None], 3, axis=3)
    return raw


def _read_zip(path: Path, opts: ReadOptions, progress: bool, spill=None) -> tuple[str, RawRead]:
    source = ZipSource(path)
    try:
        listing = source.list()
        plan = detect(source, listing, str(path), opts.format, opts.codes)
        return _read_plan(ReadContext(source, listing, plan.root, str(path), opts, progress), plan, "zip", spill)
    finally:
        source.close()


def _read_csv_file(path: Path, opts: ReadOptions, spill=None) -> tuple[str, RawRead]:
    with open(path, newline="", encoding="utf-8") as fh:
        return "csv", _resized(_decode_text_errors(read_csv, fh, str(path)), opts)


def _decode_text_errors(reader, stream, where: str) -> RawRead:
    try:
        return reader(stream, where)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: expected a UTF-8 text CSV; found undecodable bytes ({exc.reason})") from None


def _cache_root() -> Path:
    from ferkit.paths import cache_dir

    return cache_dir("datasets")
