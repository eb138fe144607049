"""Canonical emotion labels and the mappings from each dataset's own names and codes onto them."""
from __future__ import annotations

from ferkit.errors import DataError

#: Canonical names (shared/docs/DESIGN.md section 3), in ferkit's class-index order.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
EMOTIONS_WITH_CONTEMPT: tuple[str, ...] = EMOTIONS + ("contempt",)

# Spellings found in dataset folders and papers, mapped onto canonical names.
_ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry", "angered": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "happ": "happy", "joyful": "happy",
    "neutral": "neutral", "calm": "neutral", "neutrality": "neutral",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "suprise": "surprise",
    "contempt": "contempt", "contemptuous": "contempt",
}

#: The original fer2013.csv codes: 0=Angry, 1=Disgust, 2=Fear, 3=Happy, 4=Sad, 5=Surprise, 6=Neutral.
FER2013_CSV_CODES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

# Each dataset's own codes, as its documentation defines them. Index = code (RAF-DB counts from 1).
#: ExpW's label.lst uses FER2013's order.
EXPW_CODES: tuple[str, ...] = FER2013_CSV_CODES
#: RAF-DB basic, EmoLabel/list_patition_label.txt: 1 surprise ... 7 neutral (code 0 unused).
RAFDB_CODES: tuple[str | None, ...] = (None, "surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")
#: AffectNet training.csv / validation.csv ``expression``; 8 none, 9 uncertain, 10 no face are not expressions.
AFFECTNET_CODES: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")
AFFECTNET_NON_EXPRESSIONS: dict[int, str] = {8: "none", 9: "uncertain", 10: "no face"}
#: CK+ Emotion/*_emotion.txt: one float code 0-7.
CKPLUS_CODES: tuple[str, ...] = ("neutral", "angry", "contempt", "disgust", "fear", "happy", "sad", "surprise")
#: FER+ fer2013new.csv vote columns, in file order; the last two are not expressions.
FERPLUS_COLUMNS: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                                    "contempt", "unknown", "NF")
#: JAFFE file names (KA.AN1.39.tiff): the two letters after the subject.
JAFFE_CODES: dict[str, str] = {"AN": "angry", "DI": "disgust", "FE": "fear", "HA": "happy", "NE": "neutral",
                               "SA": "sad", "SU": "surprise"}
#: Code tables a generic CSV or class-folder tree with numeric labels can name (``codes=...``).
CODE_TABLES: dict[str, tuple[str | None, ...]] = {
    "fer2013": FER2013_CSV_CODES, "expw": EXPW_CODES, "rafdb": RAFDB_CODES, "affectnet": AFFECTNET_CODES,
    "ckplus": CKPLUS_CODES,
}


def canonical_label(name: str) -> str:
    """Map a dataset's class name (any case, e.g. 'Happiness', 'anger') onto ferkit's canonical name."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise DataError(
            f"unknown emotion class {name!r}; expected one of {', '.join(EMOTIONS_WITH_CONTEMPT)} "
            f"(or a common spelling such as anger, happiness, sadness)"
        )
    return _ALIASES[key]


def canonical_order(names) -> tuple[str, ...]:
    """Canonical names in ferkit's class-index order (EMOTIONS, then contempt): a dataset's label_names."""
    present = set(names)
    return tuple(n for n in EMOTIONS_WITH_CONTEMPT if n in present)


def label_from_code(code: str, table: str) -> str:
    """The canonical name for ``code`` (e.g. '3', '3.0') in a dataset's code table (see CODE_TABLES)."""
    if table not in CODE_TABLES:
        raise DataError(f"unknown label code table {table!r}; expected one of {', '.join(CODE_TABLES)}")
    codes = CODE_TABLES[table]
    try:
        value = float(code)
        ok = value == int(value) and 0 <= value < len(codes) and codes[int(value)] is not None
    except (ValueError, OverflowError):  # not a number, nan, inf
        ok = False
    if not ok:
        valid = [str(i) for i, name in enumerate(codes) if name is not None]
        raise DataError(f"label {code!r} is not a {table} code {valid[0]}-{valid[-1]}")
    return codes[int(value)]


# BGR colours per emotion, chosen to stay distinguishable on photos; the overlay and the timeline plots share
# them, so a plot reads like the video it came from.
EMOTION_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (0, 200, 255),
    "neutral": (200, 200, 200), "sad": (200, 120, 40), "surprise": (0, 140, 255), "contempt": (120, 120, 0),
}


def emotion_color(emotion: str | None) -> tuple[int, int, int]:
    """The BGR colour of an emotion's box, label and bar (white for unknown names and unclassified faces)."""
    return EMOTION_COLORS.get(emotion or "", (255, 255, 255))
