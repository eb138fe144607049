"""FER2013 in its two published forms.

* The Kaggle folder release, ``train/<class>/Training_*.jpg`` and ``test/<class>/{PublicTest,PrivateTest}_*.jpg``,
  on disk or inside a .zip (optionally under one wrapper folder). ``test/`` mixes both test halves; the file-name
  prefix decides which. Top folders ``val``/``validation``/``publictest``/``privatetest`` are accepted too.
* The original ``fer2013.csv`` (``emotion,pixels,Usage``), whose codes 0-6 mean angry, disgust, fear, happy,
  sad, surprise, neutral: a different order from the folder release, remapped here onto ``EMOTIONS``.

Which files are a FER2013 release is decided in ``ferkit.data.detect``. Both readers return a :class:`RawRead`:
decoded arrays plus what was skipped and why. Junk (OS metadata, READMEs, non-image files) is skipped and
counted; problems with real data (a corrupt image, a bad CSV row, an empty class folder) are recorded as
issues, which the loader turns into an error under ``strict``.
"""
from __future__ import annotations

import csv
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

from ferkit.data.raw import Issue, RawRead
from ferkit.data.readers import FolderSource, Listing, ZipSource, decode_gray_many
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS, EMOTIONS_WITH_CONTEMPT, FER2013_CSV_CODES, canonical_label

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".tif", ".tiff", ".webp"})
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})
# Top folder -> split; None means "decide per file from the PublicTest_/PrivateTest_ prefix".
SPLIT_FOLDERS: dict[str, str | None] = {
    "train": "train", "training": "train",
    "test": None,
    "val": "publictest", "validation": "publictest", "publictest": "publictest",
    "privatetest": "privatetest",
}
TEST_PREFIXES = (("PublicTest_", "publictest"), ("PrivateTest_", "privatetest"))
CSV_USAGE = {"training": "train", "publictest": "publictest", "privatetest": "privatetest"}
CSV_PIXELS = 48 * 48


def is_junk(name: str) -> bool:
    """OS litter and non-image files: skipped and counted, never an error (macOS zips are full of them)."""
    parts = PurePosixPath(name).parts
    base = parts[-1]
    if any(p.startswith(".") or p == "__MACOSX" for p in parts):
        return True
    if base.lower() in JUNK_NAMES or base.upper().startswith(("README", "LICENSE")):
        return True
    return PurePosixPath(base).suffix.lower() not in IMAGE_EXTENSIONS


@dataclass
class _Entry:
    name: str  # path inside the source
    source_id: str  # path below the dataset root: what ferkit prints and label overrides name
    split: str
    label: str


def plan_image_tree(listing: Listing, prefix: str, where: str) -> tuple[list[_Entry], RawRead]:
    """Map every file under ``prefix`` to (split, class) or junk, checking class names and folder shape."""
    entries: list[_Entry] = []
    report = RawRead(np.empty(0), np.empty(0), np.empty(0), np.empty(0), EMOTIONS)
    outside: list[str] = []
    unprefixed = 0
    n = len(prefix)
    for name in listing.files:
        if not name.startswith(prefix):
            continue
        rel = name[n:]
        if is_junk(rel):
            report.skip_junk(rel)
            continue
        parts = rel.split("/")
        top = parts[0].lower()
        if len(parts) == 1 or top not in SPLIT_FOLDERS:
            outside.append(rel)
            continue
        if len(parts) != 3:
            raise DataError(
                f"{where}: image {rel} is not directly inside a class folder; expected "
                f"{parts[0]}/<class>/<image> with class one of {', '.join(EMOTIONS)}"
            )
        split = SPLIT_FOLDERS[top]
        if split is None:
            split = next((s for p, s in TEST_PREFIXES if parts[2].startswith(p)), None)
            if split is None:
                unprefixed += 1
                split = "publictest"
        entries.append(_Entry(name, rel, split, _class_of(parts[0], parts[1], where)))

    # Class folders with no usable image: a missing class silently shifts every metric, so say so.
    used = Counter((e.source_id.split("/")[0], e.source_id.split("/")[1]) for e in entries)
    for d in sorted(listing.dirs):
        if not d.startswith(prefix):
            continue
        parts = d[n:].split("/")
        if len(parts) == 2 and parts[0].lower() in SPLIT_FOLDERS and not is_junk(d[n:] + "/x.jpg"):
            _class_of(parts[0], parts[1], where)
            if not used[(parts[0], parts[1])]:
                report.issues.append(Issue(f"{d[n:]}/", "class folder has no images"))

    if outside:
        report.junk_skipped += len(outside)
        report.warnings.append(
            f"skipped {len(outside)} image(s) outside the split folders (e.g. {', '.join(outside[:3])}); "
            f"expected train/<class>/ or test/<class>/"
        )
    if unprefixed:
        report.warnings.append(
            f"{unprefixed} test image(s) have neither a PublicTest_ nor a PrivateTest_ prefix; "
            f"they were put in publictest"
        )
    if any(e.label == "contempt" for e in entries):
        report.label_names = EMOTIONS_WITH_CONTEMPT
    return entries, report


def _class_of(split_folder: str, folder: str, where: str) -> str:
    try:
        return canonical_label(folder)
    except DataError:
        raise DataError(
            f"{where}: class folder {split_folder}/{folder}/ is not a known emotion; "
            f"expected one of {', '.join(EMOTIONS_WITH_CONTEMPT)} (or a common spelling such as happiness)"
        ) from None


def read_image_tree(source: FolderSource | ZipSource, listing: Listing, prefix: str, where: str) -> RawRead:
    entries, report = plan_image_tree(listing, prefix, where)
    blobs = source.read_many([e.name for e in entries])
    decoded = decode_gray_many(blobs)

    shapes = Counter(img.shape for img in decoded if isinstance(img, np.ndarray))
    shape = shapes.most_common(1)[0][0] if shapes else (48, 48)
    keep: list[int] = []
    for i, img in enumerate(decoded):
        if isinstance(img, str):
            report.issues.append(Issue(entries[i].source_id, img))
        elif img.shape != shape:
            report.issues.append(Issue(entries[i].source_id, f"size {img.shape[1]}x{img.shape[0]}, "
                                                             f"expected {shape[1]}x{shape[0]} like the rest"))
        else:
            keep.append(i)

    index = {name: i for i, name in enumerate(report.label_names)}
    images = np.empty((len(keep), *shape), np.uint8)
    for j, i in enumerate(keep):
        images[j] = decoded[i]
    report.images = images
    report.labels = np.array([index[entries[i].label] for i in keep], np.int64)
    report.splits = np.array([entries[i].split for i in keep], dtype=str)
    report.sources = np.array([entries[i].source_id for i in keep], dtype=str)
    return report


def read_csv(stream, where: str) -> RawRead:
    """The original fer2013.csv. Bad rows become issues naming their row (the header is row 1)."""
    reader = csv.reader(stream)
    header = next(reader, None)
    columns = [c.strip().lower() for c in header or []]
    if "emotion" not in columns or "pixels" not in columns:
        raise DataError(f"{where}: expected a header with columns emotion,pixels,Usage; "
                        f"found: {','.join(header or []) or 'an empty file'}")
    c_emotion, c_pixels = columns.index("emotion"), columns.index("pixels")
    c_usage = columns.index("usage") if "usage" in columns else None
    code_to_label = np.array([EMOTIONS.index(name) for name in FER2013_CSV_CODES])

    report = RawRead(np.empty(0), np.empty(0), np.empty(0), np.empty(0), EMOTIONS)
    images: list[np.ndarray] = []
    labels: list[int] = []
    splits: list[str] = []
    sources: list[str] = []
    width = max(c_emotion, c_pixels, c_usage or 0) + 1
    for row_no, row in enumerate(reader, start=2):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < width:
            report.issues.append(Issue(f"csv:row {row_no}", f"expected {width} columns, found {len(row)}"))
            continue
        code = row[c_emotion].strip()
        if not (code.isdigit() and int(code) < len(FER2013_CSV_CODES)):
            report.issues.append(Issue(f"csv:row {row_no}", f"emotion {code!r} is not a code 0-6"))
            continue
        if c_usage is None:
            split = "train"
        else:
            split = CSV_USAGE.get(row[c_usage].strip().lower())
            if split is None:
                report.issues.append(Issue(f"csv:row {row_no}", f"Usage {row[c_usage]!r} is not one of "
                                                                 f"Training, PublicTest, PrivateTest"))
                continue
        try:
            pixels = np.fromstring(row[c_pixels], dtype=np.int16, sep=" ")
        except ValueError:
            report.issues.append(Issue(f"csv:row {row_no}", "pixels contain a value that is not an integer"))
            continue
        if pixels.size != CSV_PIXELS:
            report.issues.append(Issue(f"csv:row {row_no}",
                                       f"expected {CSV_PIXELS} pixel values (48x48), found {pixels.size}"))
            continue
        if pixels.min() < 0 or pixels.max() > 255:
            report.issues.append(Issue(f"csv:row {row_no}", "pixel values outside 0-255"))
            continue
        images.append(pixels.astype(np.uint8).reshape(48, 48))
        labels.append(int(code_to_label[int(code)]))
        splits.append(split)
        sources.append(f"csv:row {row_no}")
    if c_usage is None:
        report.warnings.append(f"{where}: no Usage column; every row was put in the train split")

    report.images = np.stack(images) if images else np.empty((0, 48, 48), np.uint8)
    report.labels = np.array(labels, np.int64)
    report.splits = np.array(splits, dtype=str)
    report.sources = np.array(sources, dtype=str)
    return report
