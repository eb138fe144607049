"""Which dataset a folder or zip holds, from its file listing (and the header of a CSV or two).

Datasets with a label file are known by it: ``fer2013new.csv`` (FER+), ``EmoLabel/list_patition_label.txt``
(RAF-DB), ``training.csv``/``validation.csv`` with AffectNet's header, ``cohn-kanade-images/`` beside
``Emotion/`` (CK+), ``label.lst`` (ExpW), searched a few folders deep. Two of them in one tree is a mix the
user must resolve. Otherwise the shape decides, at the top or inside one wrapper folder: split folders with
class folders (FER2013 when its file-name prefixes are there, else any class-folder tree), class folders,
JAFFE's file names, a CSV.
"""
from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from ferkit.data import affectnet, ckplus, expw, ferplus, folders, jaffe, rafdb
from ferkit.data.fer2013 import SPLIT_FOLDERS as FER2013_SPLIT_FOLDERS, TEST_PREFIXES, is_junk
from ferkit.data.readers import FolderSource, Listing, ZipSource
from ferkit.errors import DataError

SUPPORTED_LAYOUTS = (
    "expected train/ and/or test/ with class sub-folders (FER2013 as Kaggle ships it, or any class-folder tree), "
    "class folders alone, fer2013.csv, or another dataset ferkit reads (FER+, RAF-DB, AffectNet, CK+, JAFFE, ExpW, "
    "a path,label CSV: `ferkit data formats` shows each layout)"
)
SPLIT_NAMES = {**{k.lower(): v for k, v in folders.SPLIT_FOLDERS.items()}, **FER2013_SPLIT_FOLDERS}
_MAX_DEPTH = 4  # marker files at most this many path parts deep (three folders)
_TITLES = {"ferplus": "FER+", "rafdb": "RAF-DB", "affectnet": "AffectNet", "ckplus": "CK+", "expw": "ExpW"}


@dataclass
class Plan:
    """What to read: a format, the dataset's root inside the source, and the format's files."""

    format: str
    root: str = ""
    files: list[str] = field(default_factory=list)  # marker files, source-relative
    has_splits: bool = False  # class-folder trees
    marker: str = ""  # what gave the format away, for messages


def header(source: FolderSource | ZipSource, name: str) -> list[str]:
    """The first CSV row of ``name`` (empty when unreadable: the reader then says why)."""
    try:
        with source.open_text(name) as fh:
            line = fh.readline()
    except (OSError, UnicodeDecodeError, KeyError, zipfile.BadZipFile):
        return []
    return next(csv.reader(io.StringIO(line.lstrip("\ufeff"))), [])


def is_fer2013_header(cells: list[str]) -> bool:
    names = [c.strip().lower() for c in cells]
    return "emotion" in names and "pixels" in names


def detect(source: FolderSource | ZipSource, listing: Listing, where: str, forced: str = "auto",
           codes: str = "") -> Plan:
    markers = _markers(source, listing)
    if forced != "auto":
        return _forced(source, listing, where, forced, markers, codes)
    kinds = sorted({m.format for m in markers})
    if len(kinds) > 1:
        found = "; ".join(f"{_TITLES[m.format]} ({m.marker})" for m in markers)
        raise DataError(f"{where}: a mix of dataset layouts: found {found}; point at one dataset's folder, or "
                        f"pass format=NAME (--format) to choose")
    if markers:
        if len(markers) > 1 and kinds[0] != "affectnet":
            shown = ", ".join(m.marker for m in markers)
            raise DataError(f"{where}: found {len(markers)} {_TITLES[kinds[0]]} label files ({shown}); point at "
                            f"the folder of one of them")
        if kinds[0] == "affectnet":
            return Plan("affectnet", "", [f for m in markers for f in m.files], marker=markers[0].marker)
        return markers[0]
    return _by_shape(source, listing, where, codes)


def _markers(source, listing: Listing) -> list[Plan]:
    found: list[Plan] = []
    ck_roots: set[str] = set()
    for name in listing.files:
        parts = name.split("/")
        if len(parts) > _MAX_DEPTH or any(p.startswith(".") or p == "__MACOSX" for p in parts):
            continue
        base = parts[-1].lower()
        if base == ferplus.MARKER:
            found.append(Plan("ferplus", "", [name], marker=name))
        elif name.endswith(rafdb.MARKER) and (len(parts) == 2 or name.endswith("/" + rafdb.MARKER)):
            found.append(Plan("rafdb", name[: -len(rafdb.MARKER)], [name], marker=name))
        elif base in affectnet.FILES and affectnet.has_header(header(source, name)):
            found.append(Plan("affectnet", "", [name], marker=name))
        elif base == expw.MARKER:
            found.append(Plan("expw", "", [name], marker=name))
    for d in listing.dirs:
        parts = d.split("/")
        if parts[-1] == ckplus.IMAGES and len(parts) < _MAX_DEPTH:
            root = "/".join(parts[:-1]) + "/" if len(parts) > 1 else ""
            if (root + ckplus.EMOTION) in listing.dirs:
                ck_roots.add(root)
    found += [Plan("ckplus", r, [], marker=f"{r}{ckplus.IMAGES}/ and {r}{ckplus.EMOTION}/") for r in sorted(ck_roots)]
    return found


def _forced(source, listing: Listing, where: str, fmt: str, markers: list[Plan], codes: str) -> Plan:
    mine = [m for m in markers if m.format == fmt]
    if fmt == "ckplus" and not mine:  # CK+'s class-folder crops
        plan = _by_shape(source, listing, where, codes, prefer="folders")
        if plan.format == "folders":
            return plan
    if fmt in ("ferplus", "rafdb", "expw", "ckplus"):
        if not mine:
            raise DataError(f"{where}: format {fmt}: {_expected(fmt)}")
        return mine[0]
    if fmt == "affectnet":
        if not mine:
            raise DataError(f"{where}: format affectnet: {_expected(fmt)}")
        return Plan("affectnet", "", [f for m in mine for f in m.files], marker=mine[0].marker)
    plan = _by_shape(source, listing, where, codes, prefer=fmt)
    if plan.format != fmt and not (fmt == "folders" and plan.format == "fer2013"):
        raise DataError(f"{where}: format {fmt}: {_expected(fmt)}; the files look like {plan.format}")
    if fmt == "folders":
        plan.format = "folders"
    return plan


def _expected(fmt: str) -> str:
    layouts = {"ferplus": ferplus.LAYOUT, "rafdb": rafdb.LAYOUT, "affectnet": affectnet.LAYOUT,
               "ckplus": ckplus.LAYOUT, "expw": expw.LAYOUT, "jaffe": jaffe.LAYOUT, "folders": folders.LAYOUT,
               "csv": "a CSV of path,label[,split] rows", "fer2013": "train/ and test/ class folders or fer2013.csv"}
    return f"expected {layouts[fmt]}"


def _visible(listing: Listing, prefix: str) -> tuple[list[str], list[str]]:
    """Non-junk folders and files directly under ``prefix``."""
    n = len(prefix)
    dirs = sorted(d[n:] for d in listing.dirs
                  if d.startswith(prefix) and d[n:] and "/" not in d[n:] and not is_junk(d[n:] + "/x.jpg"))
    files = sorted(f[n:] for f in listing.files if f.startswith(prefix) and "/" not in f[n:]
                   and not PurePosixPath(f).name.startswith(".") and "__MACOSX" not in f)
    return dirs, files


def _by_shape(source, listing: Listing, where: str, codes: str, prefer: str = "") -> Plan:
    prefix = ""
    for _ in range(3):  # the top, then up to two wrapper folders (a zip of a folder of a folder)
        dirs, files = _visible(listing, prefix)
        splits = [d for d in dirs if d.lower() in SPLIT_NAMES]
        classes = [d for d in dirs if folders.is_class_name(d, codes)]
        if splits and classes:
            raise DataError(f"{where}: a mix of layouts: split folders ({', '.join(d + '/' for d in splits)}) beside "
                            f"class folders ({', '.join(d + '/' for d in classes)}); expected one or the other")
        if splits:
            fmt = "fer2013" if _fer2013_names(listing, prefix) and prefer != "folders" else "folders"
            return Plan(fmt, prefix, has_splits=True, marker="split folders")
        if classes:
            return Plan("folders", prefix, has_splits=False, marker="class folders")
        images = [f for f in files if not is_junk(f)]
        if jaffe.looks_like(images) or (prefer == "jaffe" and images):
            return Plan("jaffe", prefix, marker="JAFFE file names")
        csvs = [f for f in files if f.lower().endswith(".csv")]
        named = [f for f in csvs if "fer2013" in f.lower()]
        if named or len(csvs) == 1:
            name = prefix + (named or csvs)[0]
            fmt = "fer2013" if named or is_fer2013_header(header(source, name)) else "csv"
            return Plan(fmt, prefix, [name], marker=name)
        if len(csvs) > 1:
            raise DataError(f"{where}: found {len(csvs)} CSV files ({', '.join(csvs[:5])}); point at the one that "
                            f"lists the dataset")
        if len(dirs) != 1 or images:
            break
        prefix += dirs[0] + "/"
    dirs, files = _visible(listing, "")
    found = [d + "/" for d in dirs] + files
    shown = ", ".join(found[:12]) + (f", ... ({len(found)} entries)" if len(found) > 12 else "")
    raise DataError(f"{where}: unrecognised dataset layout; {SUPPORTED_LAYOUTS}; found: {shown or 'nothing'}")


def _fer2013_names(listing: Listing, prefix: str) -> bool:
    """Kaggle's FER2013 names its files Training_*, PublicTest_*, PrivateTest_*."""
    starts = ("Training_",) + tuple(p for p, _ in TEST_PREFIXES)
    return any(f.startswith(prefix) and f.rsplit("/", 1)[-1].startswith(starts) for f in listing.files)
