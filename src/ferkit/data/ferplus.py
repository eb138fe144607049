"""FER+: FER2013 relabelled by ten annotators per image. ``fer2013new.csv`` (``Usage, Image name, neutral,
happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF``: vote counts) follows the original
``fer2013.csv`` row for row, so both are read: the pixels from one, the votes from the other.

The cache keeps every face with its ten vote counts (``extras["votes"]``); the label mode, applied after it,
turns votes into labels as the FER+ authors did. In every mode a single vote is noise and is discarded first:

* ``majority``: the top class needs more than half of the remaining votes, else the face is dropped
  (25,060 / 3,199 / 3,153 faces in train / publictest / privatetest);
* ``probability`` and ``crossentropy``: soft targets from the top classes (at most three, taken until they
  hold 75% of the votes; dropped when they hold half or less); the trainer draws a one-hot target from them
  every epoch (probability) or uses them as the target (crossentropy);
* ``multi_target``: every class with at least 30% of the votes is a right answer (dropped when those hold
  half or less).

Faces won by unknown or NF (not a face) are dropped, and so are the 173 rows without an image name. Labels are
the 8 classes with contempt.
"""
from __future__ import annotations

import numpy as np

from ferkit.data.context import ReadContext
from ferkit.data.dataset import FaceDataset
from ferkit.data.fer2013 import CSV_USAGE, read_csv
from ferkit.data.raw import Issue, RawRead
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS_WITH_CONTEMPT, FERPLUS_COLUMNS, canonical_label

NAME = "ferplus"
MARKER = "fer2013new.csv"
LAYOUT = "fer2013new.csv (Usage, Image name, 10 vote columns) with the original fer2013.csv beside it"
HEADER = ("usage", "image name") + tuple(c.lower() for c in FERPLUS_COLUMNS)
# Vote column -> canonical class index; the last two columns (unknown, NF) are not expressions.
_TO_CANONICAL = np.array([EMOTIONS_WITH_CONTEMPT.index(canonical_label(c)) for c in FERPLUS_COLUMNS[:8]])
_EMOTION_VOTES = 8


def read(ctx: ReadContext, rel: str) -> RawRead:
    base, base_where = _read_original(ctx, rel)
    report = RawRead.empty(EMOTIONS_WITH_CONTEMPT, NAME)
    report.issues = [Issue(i.id.replace("csv:row", f"{base_where} row"), i.reason) for i in base.issues]
    report.warnings = list(base.warnings)
    row_of = {int(s.rsplit(" ", 1)[1]): i for i, s in enumerate(base.sources.tolist())}
    last_row = max(row_of, default=1)

    rows = ctx.csv_rows(rel)
    _, header = next(rows, (0, []))
    if tuple(c.strip().lower() for c in header) != HEADER:
        raise DataError(f"{ctx.where}: {rel}: expected the FER+ header Usage,Image name,"
                        f"{','.join(FERPLUS_COLUMNS)}; found: {','.join(header) or 'an empty file'}")
    picked: list[int] = []
    names: list[str] = []
    votes: list[list[int]] = []
    for line, row in rows:
        at = f"{rel} line {line}"
        if len(row) != len(HEADER):
            report.issues.append(Issue(at, f"expected {len(HEADER)} columns, found {len(row)}"))
            continue
        split = CSV_USAGE.get(row[0].strip().lower())
        if split is None:
            report.issues.append(Issue(at, f"Usage {row[0]!r} is not one of Training, PublicTest, PrivateTest"))
            continue
        cells = [c.strip() for c in row[2:]]
        if not all(c.isdigit() for c in cells):
            report.issues.append(Issue(at, "vote counts must be whole numbers of votes 0-10"))
            continue
        if not row[1].strip():
            report.exclude("no image name (FER+ found no face)")
            continue
        i = row_of.get(line)
        if i is None:
            if line > last_row:
                report.issues.append(Issue(at, f"{base_where} has no row {line}; the two files must hold the "
                                               f"same rows in the same order"))
            continue  # else that fer2013.csv row was unusable and is already reported
        if base.splits[i] != split:
            report.issues.append(Issue(at, f"Usage {row[0].strip()} but {base_where} row {line} is {base.splits[i]}; "
                                           f"the two files must hold the same rows in the same order"))
            continue
        picked.append(i)
        names.append(row[1].strip())
        votes.append([int(c) for c in cells])
    if not picked and not report.issues:
        raise DataError(f"{ctx.where}: {rel} lists no images")
    index = np.array(picked, np.int64)
    counts = np.array(votes, np.float32).reshape(-1, len(FERPLUS_COLUMNS))
    report.images = base.images[index]
    report.splits = base.splits[index]
    report.sources = np.array(names, dtype=str)
    report.labels = _TO_CANONICAL[counts[:, :_EMOTION_VOTES].argmax(1)] if len(counts) else np.empty(0, np.int64)
    report.extras = {"votes": counts}
    return report


def _read_original(ctx: ReadContext, rel: str) -> tuple[RawRead, str]:
    """The fer2013.csv beside (or above) fer2013new.csv, or the one ``fer2013_csv`` names."""
    folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    parent = folder.rsplit("/", 2)[0] + "/" if folder.count("/") > 1 else ""
    for candidate in (folder + "fer2013.csv", folder + "fer2013/fer2013.csv", parent + "fer2013.csv",
                      parent + "fer2013/fer2013.csv"):
        if ctx.exists(candidate):
            with ctx.source.open_text(ctx.root + candidate) as fh:
                return _decode_errors(read_csv, fh, candidate), candidate
    if ctx.options.fer2013_csv:
        from pathlib import Path

        path = Path(ctx.options.fer2013_csv).expanduser()
        if not path.is_file():
            raise DataError(f"fer2013_csv {path}: no such file; expected the original fer2013.csv")
        with open(path, newline="", encoding="utf-8") as fh:
            return _decode_errors(read_csv, fh, str(path)), str(path)
    raise DataError(f"{ctx.where}: FER+ labels ({rel}) need the original fer2013.csv whose rows they follow; put "
                    f"it beside {rel} or pass fer2013_csv=PATH (--fer2013-csv)")


def _decode_errors(reader, stream, where: str) -> RawRead:
    try:
        return reader(stream, where)
    except UnicodeDecodeError as exc:
        raise DataError(f"{where}: expected a UTF-8 text CSV; found undecodable bytes ({exc.reason})") from None


# ---------------------------------------------------------------------------------------------------------------
# Label modes, applied to the cached votes


def apply_label_mode(ds: FaceDataset, mode: str) -> tuple[FaceDataset, dict[str, int]]:
    """Labels (and soft targets) from the votes as ``mode`` says; the faces it drops, counted by reason."""
    from ferkit.data.options import LABEL_MODES

    if mode not in LABEL_MODES:
        raise DataError(f"unknown FER+ label mode {mode!r}; expected one of {', '.join(LABEL_MODES)}")
    votes = ds.extras["votes"].copy()
    votes[votes <= 1] = 0  # a single annotator's vote is noise (the FER+ authors' rule)
    chosen = np.zeros_like(votes)
    for i, v in enumerate(votes):
        chosen[i] = _choose(v, mode)
    excluded: dict[str, int] = {}
    kept = chosen.sum(1) > 0
    _count(excluded, "no agreement among the annotators", int((~kept).sum()))
    top = chosen.argmax(1)
    for column, reason in ((8, "won by unknown"), (9, "won by NF (not a face)")):
        hit = kept & (top == column)
        _count(excluded, reason, int(hit.sum()))
        kept &= ~hit
    out = ds.subset(kept)
    emotions = chosen[kept][:, :_EMOTION_VOTES]
    out.labels = _TO_CANONICAL[emotions.argmax(1)].astype(np.int64)
    if mode != "majority":
        targets = np.zeros((len(emotions), len(ds.label_names)), np.float32)
        targets[:, _TO_CANONICAL] = emotions / emotions.sum(1, keepdims=True)
        out.targets, out.target_mode = targets, mode
    return out, excluded


def _count(excluded: dict[str, int], reason: str, n: int) -> None:
    if n:
        excluded[reason] = excluded.get(reason, 0) + n


def _choose(v: np.ndarray, mode: str) -> np.ndarray:
    """The votes that count for one face (unknown/NF included, so the caller can drop faces they win);
    all zero when the annotators did not agree enough."""
    total = v.sum()
    out = np.zeros_like(v)
    if total == 0:
        return out
    if mode == "majority":
        top = int(v.argmax())
        if v[top] > 0.5 * total:
            out[top] = v[top]
        return out
    if mode == "multi_target":
        take = v >= 0.3 * total
        out[take] = v[take]
        return out if out.sum() > 0.5 * total else np.zeros_like(v)
    # probability / crossentropy: the top classes, ties together, until they hold 75% of the votes (at most 3).
    remaining, count = v.copy(), 0
    while out.sum() < 0.75 * total and count < 3:
        peak = remaining.max()
        if peak == 0:
            break
        stop = False
        for k in np.flatnonzero(remaining == peak):
            if k >= _EMOTION_VOTES:  # unknown or NF ties in: it ends the list, and counts only if alone
                if out.sum() == 0:
                    out[k] = peak
                    count += 1
                stop = True
                break
            out[k] = peak
            count += 1
        remaining[out > 0] = 0
        if stop:
            break
    if out.sum() <= 0.5 * total or count > 3:
        return np.zeros_like(v)
    return out
