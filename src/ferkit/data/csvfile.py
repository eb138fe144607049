"""Any CSV of ``path,label[,split][,subject]`` rows naming image files, relative to the CSV's folder.

The header names the columns; common names are recognised (path: path, file, filename, image, image_path;
label: label, emotion, expression, class; split: split, usage, set, subset; subject: subject, person, group),
others are given with ``columns="path=file,label=emotion,split=usage"``. A file without a header is read as
path,label[,split] when its first row already names an image. Labels are class names in any spelling, or a
dataset's numeric codes with ``codes=...``; splits train, val/validation, test (or FER2013's). Without a
split column every face is in ``train``.
"""
from __future__ import annotations

from ferkit.data.context import ReadContext, clean_path, is_image
from ferkit.data.folders import SPLIT_FOLDERS, subject_of
from ferkit.data.options import parse_columns
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS_WITH_CONTEMPT, canonical_label, label_from_code

NAME = "csv"
LAYOUT = "a CSV of path,label[,split] rows (header names configurable) beside the images it names"
KNOWN_COLUMNS = {
    "path": ("path", "file", "filename", "file_name", "image", "image_path", "img", "filepath", "file_path"),
    "label": ("label", "emotion", "expression", "class", "category"),
    "split": ("split", "usage", "set", "subset", "partition"),
    "subject": ("subject", "subject_id", "person", "identity", "group"),
}
SPLIT_VALUES = {**SPLIT_FOLDERS, "publictest": "publictest", "privatetest": "privatetest"}


def read(ctx: ReadContext, rel: str) -> RawRead:
    report = RawRead.empty(EMOTIONS_WITH_CONTEMPT, NAME)
    rows = ctx.csv_rows(rel)
    first = next(rows, None)
    if first is None:
        raise DataError(f"{ctx.where}: {rel} is empty; expected rows path,label[,split]")
    _, header = first
    at, headerless = _columns(ctx, rel, header)
    if headerless:
        rows = _chain(first, rows)
    folder = rel.rsplit("/", 1)[0] + "/" if "/" in rel else ""
    items: list[Item] = []
    for line, row in rows:
        where = f"{rel} line {line}"
        if len(row) <= max(at.values()):
            report.issues.append(Issue(where, f"expected at least {max(at.values()) + 1} columns, found {len(row)}"))
            continue
        path = clean_path(row[at["path"]])
        label_text = row[at["label"]].strip()
        try:
            label = _label(label_text, ctx.options.codes)
        except DataError as exc:
            if label_text.lstrip("-").replace(".", "", 1).isdigit() and not ctx.options.codes:
                raise DataError(f"{ctx.where}: {where}: label {label_text!r} is a number; say whose codes these "
                                f"are with codes=fer2013, affectnet, rafdb or ckplus, or write class names"
                                ) from None
            report.issues.append(Issue(where, str(exc)))
            continue
        split = "train"
        if "split" in at:
            split = SPLIT_VALUES.get(row[at["split"]].strip().lower())
            if split is None:
                report.issues.append(Issue(where, f"split {row[at['split']]!r} is not one of train, val, test"))
                continue
        if path.startswith("/") or ".." in path.split("/"):
            report.issues.append(Issue(where, f"path {path!r} leaves the CSV's folder; write it relative to it"))
            continue
        if not ctx.exists(folder + path):
            report.issues.append(Issue(where, f"image {path} not found (relative to {folder or 'the CSV folder'})"))
            continue
        if "subject" in at:
            group = row[at["subject"]].strip() or None
        else:
            group = subject_of(path.rsplit("/", 1)[-1])
        items.append(Item(ctx.root + folder + path, path, split, label, where=where, group=group))
    if not items and not report.issues:
        raise DataError(f"{ctx.where}: {rel} has a header but no rows")
    return ctx.decode(report, items, size=None, color="auto", desc="csv")


def _label(text: str, codes: str) -> str:
    if codes and text.lstrip("-").replace(".", "", 1).isdigit():
        return label_from_code(text, codes)
    return canonical_label(text)


def _columns(ctx: ReadContext, rel: str, header: list[str]) -> tuple[dict[str, int], bool]:
    """{role: column index}, and whether the file has no header row."""
    names = [c.strip().lower() for c in header]
    given = parse_columns(ctx.options.columns) if ctx.options.columns else {}
    at: dict[str, int] = {}
    for role, column in given.items():
        if column.lower() not in names:
            raise DataError(f"{ctx.where}: {rel}: no column {column!r} (columns={ctx.options.columns}); the "
                            f"header has: {','.join(header)}")
        at[role] = names.index(column.lower())
    for role, known in KNOWN_COLUMNS.items():
        if role not in at:
            found = next((names.index(k) for k in known if k in names), None)
            if found is not None:
                at[role] = found
    if "path" in at and "label" in at:
        return at, False
    if not given and 2 <= len(header) <= 4 and is_image(header[0].strip()):
        return {"path": 0, "label": 1, **({"split": 2} if len(header) >= 3 else {})}, True
    raise DataError(f"{ctx.where}: {rel}: expected a header naming the image path and label columns "
                    f"(path,label[,split]; or columns=path=COL,label=COL); found: {','.join(header)}")


def _chain(first, rest):
    yield first
    yield from rest
