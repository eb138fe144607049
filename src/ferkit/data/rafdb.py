"""RAF-DB basic: ``EmoLabel/list_patition_label.txt`` (lines ``train_00001.jpg 5``) with the aligned faces
``Image/aligned/train_00001_aligned.jpg`` (100x100 RGB) or the original photos ``Image/original/train_00001.jpg``.

Codes 1 surprise, 2 fear, 3 disgust, 4 happy, 5 sad, 6 angry, 7 neutral; the split is the name's prefix
(12,271 train, 3,068 test in the full release).
"""
from __future__ import annotations

from ferkit.data.context import ReadContext
from ferkit.data.raw import Issue, Item, RawRead
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS, RAFDB_CODES

NAME = "rafdb"
MARKER = "EmoLabel/list_patition_label.txt"
LAYOUT = ("EmoLabel/list_patition_label.txt (lines `train_00001.jpg 5`, codes 1-7) and "
          "Image/aligned/train_00001_aligned.jpg (or Image/original/train_00001.jpg)")
ORIGINAL_SIZE = 112  # the original photos vary in size; the aligned faces are 100x100 and stay so
SPLIT_PREFIXES = {"train_": "train", "test_": "test"}


def read(ctx: ReadContext) -> RawRead:
    report = RawRead.empty(EMOTIONS, NAME)
    variant = ctx.options.variant
    if variant == "auto":
        variant = "aligned" if ctx.under("Image/aligned") else "original"
    folder = f"Image/{variant}/"
    if not ctx.under(folder):
        raise DataError(f"{ctx.where}: no images in {folder}; RAF-DB basic keeps them in Image/aligned/ "
                        f"(train_00001_aligned.jpg) or Image/original/ (train_00001.jpg)")
    items: list[Item] = []
    seen: dict[str, int] = {}
    for line_no, line in ctx.text_lines(MARKER):
        if not line.strip():
            continue
        at = f"{MARKER} line {line_no}"
        cells = line.split()
        if len(cells) != 2:
            report.issues.append(Issue(at, f"expected '<image> <code>' such as 'train_00001.jpg 5'; found {line!r}"))
            continue
        name, code = cells
        split = next((s for p, s in SPLIT_PREFIXES.items() if name.startswith(p)), None)
        if split is None:
            report.issues.append(Issue(at, f"image name {name!r} starts with neither train_ nor test_"))
            continue
        if not (code.isdigit() and 1 <= int(code) <= 7):
            report.issues.append(Issue(at, f"code {code!r} is not one of 1-7 (1 surprise ... 7 neutral)"))
            continue
        if name in seen:
            report.issues.append(Issue(at, f"{name} is listed again (first on line {seen[name]})"))
            continue
        seen[name] = line_no
        stem, dot, ext = name.rpartition(".")
        rel = folder + (f"{stem}_aligned.{ext}" if variant == "aligned" else name)
        if not ctx.exists(rel):
            report.issues.append(Issue(at, f"image {rel} not found"))
            continue
        items.append(Item(ctx.root + rel, rel, split, RAFDB_CODES[int(code)], where=at))
    if not seen and not report.issues:
        raise DataError(f"{ctx.where}: {MARKER} lists no images; expected lines such as 'train_00001.jpg 5'")
    size = None if variant == "aligned" else ORIGINAL_SIZE
    return ctx.decode(report, items, size=size, color="rgb", label_names=EMOTIONS, desc="RAF-DB")
