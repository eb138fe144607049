"""How to read a dataset: the choices that shape the decoded faces (and so the cache key), and the ones
applied after the cache (label mode, classes, validation split).

Every option has a default that reads a dataset as its authors publish it; ``ferkit data inspect``,
``evaluate`` and ``train`` expose them as flags of the same names.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ferkit.data.readers import COLORS
from ferkit.errors import DataError
from ferkit.labels import CODE_TABLES

FORMATS = ("auto", "fer2013", "ferplus", "rafdb", "affectnet", "ckplus", "jaffe", "expw", "folders", "csv")
LABEL_MODES = ("majority", "probability", "crossentropy", "multi_target")
VARIANTS = ("auto", "aligned", "original")
FITS = ("crop", "pad")


@dataclass(frozen=True)
class ReadOptions:
    """Options that change the decoded faces: each distinct set gets its own cache file."""

    format: str = "auto"  # one of FORMATS; auto detects it from the files
    size: int | None = None  # side of the cached faces; None: the format's default (native for crops)
    color: str = "auto"  # auto (what the dataset has), gray or rgb
    fit: str = "crop"  # images without a face box: their centre square (crop) or all of them, padded (pad)
    variant: str = "auto"  # RAF-DB: aligned (100x100 faces) or original photos; auto prefers aligned
    emotion_frames: int = 3  # CK+: the last N frames of a labelled sequence carry its emotion ...
    neutral_frames: int = 1  # ... and its first N frames are neutral (0: none)
    columns: str = ""  # generic CSV: "path=file,label=emotion,split=usage,subject=person" (auto-detected)
    codes: str = ""  # generic CSV or folders with numeric labels: whose codes (fer2013, affectnet, ...)
    fer2013_csv: str = ""  # FER+: the fer2013.csv its rows follow, when it is not beside fer2013new.csv

    def __post_init__(self) -> None:
        if self.format not in FORMATS:
            raise DataError(f"unknown dataset format {self.format!r}; expected one of {', '.join(FORMATS)}")
        if self.size is not None and not (isinstance(self.size, int) and 8 <= self.size <= 1024):
            raise DataError(f"size {self.size!r}: expected a side in pixels from 8 to 1024")
        if self.color not in COLORS:
            raise DataError(f"unknown colour {self.color!r}; expected one of {', '.join(COLORS)}")
        if self.fit not in FITS:
            raise DataError(f"unknown fit {self.fit!r}; expected one of {', '.join(FITS)}")
        if self.variant not in VARIANTS:
            raise DataError(f"unknown RAF-DB image variant {self.variant!r}; expected one of {', '.join(VARIANTS)}")
        if self.emotion_frames < 1 or self.neutral_frames < 0:
            raise DataError(f"CK+ frames: expected emotion_frames >= 1 and neutral_frames >= 0; got "
                            f"{self.emotion_frames} and {self.neutral_frames}")
        if self.codes and self.codes not in CODE_TABLES:
            raise DataError(f"unknown label codes {self.codes!r}; expected one of {', '.join(CODE_TABLES)}")

    def key(self) -> str:
        return "|".join(f"{k}={v}" for k, v in asdict(self).items())

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def parse_columns(spec: str) -> dict[str, str]:
    """``"path=file,label=emotion"`` -> {"path": "file", "label": "emotion"}."""
    roles = ("path", "label", "split", "subject")
    out: dict[str, str] = {}
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        role, sep, column = part.partition("=")
        if not sep or role.strip() not in roles or not column.strip():
            raise DataError(f"columns {spec!r}: expected comma-separated ROLE=COLUMN with ROLE one of "
                            f"{', '.join(roles)}, e.g. path=file,label=emotion")
        out[role.strip()] = column.strip()
    return out


def parse_classes(classes) -> tuple[str, ...] | None:
    """``7`` (the basic emotions), ``8`` (plus contempt), or names (any spelling) -> canonical names."""
    from ferkit.labels import EMOTIONS, EMOTIONS_WITH_CONTEMPT, canonical_label, canonical_order

    if classes is None or classes == "":
        return None
    if isinstance(classes, str):
        classes = int(classes) if classes.strip().isdigit() else [c for c in classes.split(",") if c.strip()]
    if isinstance(classes, int):
        if classes not in (7, 8):
            raise DataError(f"classes {classes}: expected 7 (the basic emotions), 8 (with contempt) or class names")
        return EMOTIONS if classes == 7 else EMOTIONS_WITH_CONTEMPT
    return canonical_order(canonical_label(c) for c in classes)
