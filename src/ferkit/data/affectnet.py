"""AffectNet: ``training.csv`` and ``validation.csv`` (``subDirectory_filePath, face_x, face_y, face_width,
face_height, facial_landmarks, expression, valence, arousal``), each row one face box in one photo.

Expression codes 0 neutral, 1 happy, 2 sad, 3 surprise, 4 fear, 5 disgust, 6 anger, 7 contempt; 8 none,
9 uncertain and 10 no face are not expressions and are left out (counted). The face box is cropped (as the
square around it) and valence and arousal are kept (``FaceDataset.extras``). The validation set is what
papers report on, so it is the ``test`` split here (500 faces per class); carve a validation split from
train with ``val_split``. ``classes=7`` leaves out contempt. Class-folder redistributions of AffectNet read
as any class-folder tree.
"""
from __future__ import annotations

import math

from ferkit.data.context import ReadContext, clean_path
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.errors import DataError
from ferkit.labels import AFFECTNET_CODES, AFFECTNET_NON_EXPRESSIONS, EMOTIONS_WITH_CONTEMPT

NAME = "affectnet"
FILES = {"training.csv": "train", "validation.csv": "test"}
COLUMNS = ("subdirectory_filepath", "face_x", "face_y", "face_width", "face_height", "expression", "valence",
           "arousal")
LAYOUT = ("training.csv and/or validation.csv (columns subDirectory_filePath, face_x, face_y, face_width, "
          "face_height, facial_landmarks, expression, valence, arousal) and the images they name, e.g. "
          "Manually_Annotated_Images/689/<name>.jpg")
DEFAULT_SIZE = 112


def has_header(header: list[str]) -> bool:
    return "subdirectory_filepath" in [c.strip().lower() for c in header]


def read(ctx: ReadContext, csv_files: list[str]) -> RawRead:
    """``csv_files``: the root-relative training.csv / validation.csv found."""
    report = RawRead.empty(EMOTIONS_WITH_CONTEMPT, NAME)
    items: list[Item] = []
    for rel in csv_files:
        split = FILES.get(rel.rsplit("/", 1)[-1].lower(), "train")
        items += _read_csv(ctx, rel, split, report)
    return ctx.decode(report, items, size=DEFAULT_SIZE, color="rgb", label_names=EMOTIONS_WITH_CONTEMPT,
                      desc="AffectNet")


def _read_csv(ctx: ReadContext, rel: str, split: str, report: RawRead) -> list[Item]:
    rows = ctx.csv_rows(rel)
    _, header = next(rows, (0, []))
    columns = [c.strip().lower() for c in header]
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise DataError(f"{ctx.where}: {rel}: expected AffectNet's header subDirectory_filePath,face_x,face_y,"
                        f"face_width,face_height,facial_landmarks,expression,valence,arousal; missing "
                        f"{', '.join(missing)} in: {','.join(header) or 'an empty file'}")
    at = {c: columns.index(c) for c in COLUMNS}
    width = max(at.values()) + 1
    rows = list(rows)
    paths = [clean_path(r[at["subdirectory_filepath"]]) for _, r in rows[:50] if len(r) >= width]
    folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    parent = folder.rsplit("/", 2)[0] + "/" if folder.count("/") > 1 else ""
    candidates = ["", "Manually_Annotated_Images/", "Manually_Annotated/Manually_Annotated_Images/", folder,
                  parent + "Manually_Annotated_Images/"] + ctx.folders(2)
    prefix = ctx.image_prefix(rel, paths, list(dict.fromkeys(candidates)))
    items: list[Item] = []
    for line, row in rows:
        where = f"{rel} line {line}"
        if len(row) < width:
            report.issues.append(Issue(where, f"expected {len(header)} columns, found {len(row)}"))
            continue
        code = row[at["expression"]].strip()
        if not (code.isdigit() and int(code) <= 10):
            report.issues.append(Issue(where, f"expression {code!r} is not a code 0-10"))
            continue
        if int(code) in AFFECTNET_NON_EXPRESSIONS:
            report.exclude(f"not an expression ({AFFECTNET_NON_EXPRESSIONS[int(code)]})")
            continue
        try:
            box = tuple(float(row[at[c]]) for c in ("face_x", "face_y", "face_width", "face_height"))
            valence, arousal = float(row[at["valence"]]), float(row[at["arousal"]])
        except ValueError:
            report.issues.append(Issue(where, "face box, valence and arousal must be numbers"))
            continue
        if not all(math.isfinite(v) for v in (*box, valence, arousal)):
            report.issues.append(Issue(where, "face box, valence and arousal must be finite numbers"))
            continue
        path = clean_path(row[at["subdirectory_filepath"]])
        if not ctx.exists(prefix + path):
            report.issues.append(Issue(where, f"image {prefix + path} not found"))
            continue
        items.append(Item(ctx.root + prefix + path, path, split, AFFECTNET_CODES[int(code)], where=where, box=box,
                          extra={"valence": valence, "arousal": arousal}))
    return items
