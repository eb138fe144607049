"""Any class-folder tree: ``<class>/<image>`` or ``<split>/<class>/<image>`` (split folders train, val or
validation, test; images may sit deeper inside a class folder). Class folders are named by any spelling
``ferkit.labels.canonical_label`` knows (anger, Happiness, sadness, ...), or by a dataset's numeric codes with
``codes=affectnet`` (or fer2013, rafdb, ckplus). A tree without split folders is all ``train``.

Faces keep their native size (the most common one; others are cropped to their centre square and resized,
with a warning) unless ``size`` is given, and their colour. File names that carry a subject, CK+'s
``S010_004_00000017.png`` or JAFFE's ``KA.AN1.39.tiff``, group the faces by subject for splits and folds.
"""
from __future__ import annotations

import re

from ferkit.data.context import ReadContext
from ferkit.data.fer2013 import is_junk
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS_WITH_CONTEMPT, canonical_label, label_from_code

NAME = "folders"
LAYOUT = "<class>/<image> or <split>/<class>/<image> (splits train, val, test; any class spelling)"
SPLIT_FOLDERS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test", "publictest": "publictest",
                 "privatetest": "privatetest"}
_SUBJECTS = (re.compile(r"^(S\d{3})_\d{3}_\d+"), re.compile(r"^([A-Za-z]{2})\.[A-Za-z]{2}\d*\.\d+\."))
_CKPLUS = _SUBJECTS[0]


def subject_of(file_name: str) -> str | None:
    """The subject a CK+ (S010_004_...) or JAFFE (KA.AN1.39...) file name names, else None."""
    for pattern in _SUBJECTS:
        match = pattern.match(file_name)
        if match:
            return match.group(1).upper()
    return None


def is_class_name(name: str, codes: str = "") -> bool:
    try:
        class_of(name, codes)
        return True
    except DataError:
        return False


def class_of(folder: str, codes: str = "") -> str:
    if codes and folder.strip().lstrip("-").replace(".", "", 1).isdigit():
        return label_from_code(folder, codes)
    return canonical_label(folder)


def read(ctx: ReadContext, has_splits: bool) -> RawRead:
    codes = ctx.options.codes
    report = RawRead.empty(EMOTIONS_WITH_CONTEMPT, NAME)
    depth = 2 if has_splits else 1  # parts before the image: [split/]class
    items: list[Item] = []
    outside: list[str] = []
    used: set[str] = set()
    for rel in ctx.under(""):
        if is_junk(rel):
            report.skip_junk(rel)
            continue
        parts = rel.split("/")
        if len(parts) <= depth or (has_splits and parts[0].lower() not in SPLIT_FOLDERS):
            outside.append(rel)
            continue
        folder = "/".join(parts[:depth])
        label = _checked_class(ctx, folder, codes)
        split = SPLIT_FOLDERS[parts[0].lower()] if has_splits else "train"
        used.add(folder)
        items.append(Item(ctx.root + rel, rel, split, label, group=subject_of(parts[-1])))
    for d in sorted(ctx.listing.dirs):
        rel = ctx.rel(d)
        parts = rel.split("/")
        if d.startswith(ctx.root) and len(parts) == depth and not is_junk(rel + "/x.jpg") and rel not in used:
            if has_splits and parts[0].lower() not in SPLIT_FOLDERS:
                continue
            _checked_class(ctx, rel, codes)
            report.issues.append(Issue(f"{rel}/", "class folder has no images"))
    if outside:
        report.junk_skipped += len(outside)
        expected = "<split>/<class>/<image>" if has_splits else "<class>/<image>"
        report.warnings.append(f"skipped {len(outside)} image(s) outside the class folders (e.g. "
                               f"{', '.join(outside[:3])}); expected {expected}")
    if items and all(it.group and _CKPLUS.match(it.name.rsplit("/", 1)[-1]) for it in items):
        report.format = "ckplus"
    return ctx.decode(report, items, size=None, color="auto", desc="folders")


def _checked_class(ctx: ReadContext, folder: str, codes: str) -> str:
    name = folder.rsplit("/", 1)[-1]
    try:
        return class_of(name, codes)
    except DataError as exc:
        hint = "" if codes else " (numeric folders: pass codes=fer2013, affectnet, rafdb or ckplus)"
        reason = str(exc) if codes else (f"is not a known emotion; expected one of {', '.join(EMOTIONS_WITH_CONTEMPT)}"
                                         f" (or a common spelling such as happiness){hint}")
        raise DataError(f"{ctx.where}: class folder {folder}/ {reason}") from None
