"""JAFFE: 213 pictures of 10 Japanese women, labelled in their file names, e.g. ``KA.AN1.39.tiff``: subject
``KA``, expression ``AN`` (AN, DI, FE, HA, NE, SA, SU) and take 1, picture 39.

The pictures are 256x256 gray and kept so (``size`` picks another side). JAFFE ships no split: every face
is in ``train`` and belongs to its subject (``groups``), so validation splits and folds hold out whole people.
"""
from __future__ import annotations

import re

from ferkit.data.context import ReadContext, is_image
from ferkit.data.fer2013 import is_junk
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.labels import EMOTIONS, JAFFE_CODES

NAME = "jaffe"
LAYOUT = ("one folder of pictures named SUBJECT.CODE<take>.<number>.tiff, e.g. KA.AN1.39.tiff "
          "(codes AN DI FE HA NE SA SU)")
PATTERN = re.compile(r"^([A-Za-z]{2})\.([A-Za-z]{2})(\d*)\.(\d+)\.[A-Za-z]+$")


def looks_like(names: list[str]) -> bool:
    """Most pictures (and at least 5) are named like JAFFE's."""
    images = [n.rsplit("/", 1)[-1] for n in names if is_image(n)]
    hits = sum(bool(PATTERN.match(n)) for n in images)
    return hits >= 5 and hits >= 0.5 * len(images)


def read(ctx: ReadContext) -> RawRead:
    report = RawRead.empty(EMOTIONS, NAME)
    items: list[Item] = []
    for rel in ctx.under(""):
        if is_junk(rel):
            report.skip_junk(rel)
            continue
        base = rel.rsplit("/", 1)[-1]
        match = PATTERN.match(base)
        if not match:
            report.issues.append(Issue(rel, "name does not follow JAFFE's SUBJECT.CODE<take>.<number>.tiff "
                                            "(e.g. KA.AN1.39.tiff)"))
            continue
        code = match.group(2).upper()
        if code not in JAFFE_CODES:
            report.issues.append(Issue(rel, f"unknown expression code {code!r}; expected one of "
                                            f"{', '.join(JAFFE_CODES)}"))
            continue
        items.append(Item(ctx.root + rel, rel, "train", JAFFE_CODES[code], group=match.group(1).upper()))
    return ctx.decode(report, items, size=None, color="gray", label_names=EMOTIONS, desc="JAFFE")
