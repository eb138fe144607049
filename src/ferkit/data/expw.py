"""ExpW (Expression in-the-Wild): ``label.lst`` lines ``image face_id top left right bottom confidence label``
naming faces in the photos of ``origin/``; labels use FER2013's order (0 angry, 1 disgust, 2 fear, 3 happy,
4 sad, 5 surprise, 6 neutral). Each face is cropped from its box (the square around it) at ``size`` (112 by
default), in colour. ExpW ships no split: every face is in ``train``; the detector's confidence is kept in
``extras``.
"""
from __future__ import annotations

import math

from ferkit.data.context import ReadContext, clean_path
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.labels import EMOTIONS, EXPW_CODES

NAME = "expw"
MARKER = "label.lst"
LAYOUT = ("label.lst (lines `image face_id top left right bottom confidence label`, labels 0-6 in FER2013's "
          "order) and the photos it names in origin/ (e.g. data/label/label.lst, data/image/origin/)")
DEFAULT_SIZE = 112


def read(ctx: ReadContext, label_file: str) -> RawRead:
    report = RawRead.empty(EMOTIONS, NAME)
    rows: list[tuple[str, list[str]]] = []
    for line_no, line in ctx.text_lines(label_file):
        if not line.strip():
            continue
        at = f"{label_file} line {line_no}"
        cells = line.split()
        if len(cells) != 8:
            report.issues.append(Issue(at, f"expected 8 fields 'image face_id top left right bottom confidence "
                                           f"label'; found {len(cells)}"))
            continue
        rows.append((at, cells))
    here = label_file.rsplit("/", 1)[0] + "/" if "/" in label_file else ""
    up = here.rsplit("/", 2)[0] + "/" if here.count("/") > 1 else ""
    candidates = [here + "origin/", up + "image/origin/", up + "origin/", "origin/", "image/origin/", here, ""]
    candidates += ctx.folders(3)
    prefix = ctx.image_prefix(label_file, [clean_path(c[0]) for _, c in rows[:50]], list(dict.fromkeys(candidates)))

    items: list[Item] = []
    for at, cells in rows:
        image, face_id, *numbers, label = cells
        try:
            top, left, right, bottom, confidence = (float(v) for v in numbers)
        except ValueError:
            report.issues.append(Issue(at, "top, left, right, bottom and confidence must be numbers"))
            continue
        if not all(math.isfinite(v) for v in (top, left, right, bottom)):
            report.issues.append(Issue(at, "top, left, right and bottom must be finite numbers"))
            continue
        if not (label.isdigit() and int(label) < len(EXPW_CODES)):
            report.issues.append(Issue(at, f"label {label!r} is not a code 0-6"))
            continue
        path = clean_path(image)
        if not ctx.exists(prefix + path):
            report.issues.append(Issue(at, f"image {prefix + path} not found"))
            continue
        items.append(Item(ctx.root + prefix + path, f"{path}#{face_id}", "train", EXPW_CODES[int(label)], where=at,
                          box=(left, top, right - left, bottom - top), extra={"confidence": confidence}))
    return ctx.decode(report, items, size=DEFAULT_SIZE, color="rgb", label_names=EMOTIONS, desc="ExpW")
