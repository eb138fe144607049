"""CK+ (extended Cohn-Kanade) as distributed: image sequences ``cohn-kanade-images/S005/001/S005_001_00000001.png``
(neutral onset to peak) and, for the labelled ones, ``Emotion/S005/001/S005_001_000000NN_emotion.txt`` holding
one float code 0-7: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise.

A labelled sequence gives its last ``emotion_frames`` frames (ending at the frame the emotion file names, the
peak) with its emotion and its first ``neutral_frames`` frames as neutral. Frames are whole 640x490 pictures,
stored as their centre square at ``size``. Every face belongs to its subject (``groups``): the frames of one
sequence are near-identical, so splits and folds must keep a subject on one side. CK+ ships no split: every
face is in ``train``. The 48x48 class-folder crops (``CK+48/anger/S010_004_00000017.png``) read as a
class-folder tree, grouped by the subject in their names.
"""
from __future__ import annotations

import math
import re

from ferkit.data.context import ReadContext, is_image
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.errors import DataError
from ferkit.labels import CKPLUS_CODES, EMOTIONS_WITH_CONTEMPT

NAME = "ckplus"
IMAGES, EMOTION = "cohn-kanade-images", "Emotion"
LAYOUT = ("cohn-kanade-images/S005/001/S005_001_00000001.png ... and Emotion/S005/001/S005_001_00000011_emotion.txt "
          "(one code 0-7); or class folders of crops named S010_004_00000017.png")
DEFAULT_SIZE = 112
_EMOTION_FILE = re.compile(r"^(S\d+)_(\d+)_(\d+)_emotion\.txt$", re.IGNORECASE)
_FRAME = re.compile(r"_(\d+)\.[A-Za-z]+$")


def read(ctx: ReadContext) -> RawRead:
    opts = ctx.options
    report = RawRead.empty(EMOTIONS_WITH_CONTEMPT, NAME)
    frames: dict[str, list[str]] = {}  # "S005/001" -> frame paths in frame order
    for rel in ctx.under(IMAGES):
        parts = rel.split("/")
        if len(parts) == 4 and is_image(rel):
            frames.setdefault(f"{parts[1]}/{parts[2]}", []).append(rel)
    for seq in frames.values():
        seq.sort(key=_frame_number)

    items: list[Item] = []
    labelled: dict[str, str] = {}
    for rel in ctx.under(EMOTION):
        parts = rel.split("/")
        match = _EMOTION_FILE.match(parts[-1])
        if not match or len(parts) != 4:
            continue
        seq_id = f"{parts[1]}/{parts[2]}"
        if seq_id in labelled:
            report.issues.append(Issue(rel, f"a second emotion file for sequence {seq_id} (first: {labelled[seq_id]})"))
            continue
        labelled[seq_id] = rel
        code = _read_code(ctx, rel, report)
        if code is None:
            continue
        seq = frames.get(seq_id)
        if not seq:
            report.issues.append(Issue(rel, f"no frames in {IMAGES}/{seq_id}/"))
            continue
        peak = int(match.group(3))
        upto = [f for f in seq if _frame_number(f) <= peak] or seq
        subject = parts[1]
        emotion = upto[-opts.emotion_frames:]
        neutral = [f for f in seq[:opts.neutral_frames] if f not in emotion]
        for f in neutral:
            items.append(Item(ctx.root + f, f, "train", "neutral", group=subject))
        for f in emotion:
            items.append(Item(ctx.root + f, f, "train", CKPLUS_CODES[code], where=f"{rel} line 1", group=subject))
    if not labelled:
        raise DataError(f"{ctx.where}: no emotion files in {EMOTION}/; expected "
                        f"{EMOTION}/S005/001/S005_001_00000011_emotion.txt beside {IMAGES}/")
    unlabelled = len(set(frames) - set(labelled))
    if unlabelled:
        report.exclude("sequences without an emotion file", unlabelled)
    return ctx.decode(report, items, size=DEFAULT_SIZE, color="auto", label_names=EMOTIONS_WITH_CONTEMPT,
                      desc="CK+")


def _frame_number(rel: str) -> int:
    match = _FRAME.search(rel)
    return int(match.group(1)) if match else 0


def _read_code(ctx: ReadContext, rel: str, report: RawRead) -> int | None:
    try:
        values = [line.strip() for _, line in ctx.text_lines(rel) if line.strip()]
    except DataError as exc:  # one unreadable label file costs its sequence, not the dataset
        report.issues.append(Issue(f"{rel} line 1", str(exc).split(f"{rel}: ", 1)[-1]))
        return None
    text = values[0] if len(values) == 1 else " / ".join(values)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value == int(value) and 0 <= value < len(CKPLUS_CODES)):
        report.issues.append(Issue(f"{rel} line 1", f"expected one emotion code 0-7; found {text!r}"))
        return None
    return int(value)
