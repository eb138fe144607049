"""Canonical emotion labels and the mappings from each dataset's own names and codes onto them."""
from __future__ import annotations

from ferkit.errors import DataError

#: Canonical names (shared/docs/DESIGN.md section 3), in ferkit's class-index order.
EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
EMOTIONS_WITH_CONTEMPT: tuple[str, ...] = EMOTIONS + ("contempt",)

# Spellings found in dataset folders and papers, mapped onto canonical names.
_ALIASES: dict[str, str] = {
    "anger": "angry", "angry": "angry", "mad": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy", "happ": "happy",
    "neutral": "neutral", "calm": "neutral",
    "sad": "sad", "sadness": "sad", "sa": "sad",
    "surprise": "surprise", "surprised": "surprise", "suprise": "surprise",
    "contempt": "contempt",
}

#: The original fer2013.csv codes: 0=Angry, 1=Disgust, 2=Fear, 3=Happy, 4=Sad, 5=Surprise, 6=Neutral.
FER2013_CSV_CODES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def canonical_label(name: str) -> str:
    """Map a dataset's class name (any case, e.g. 'Happiness', 'anger') onto ferkit's canonical name."""
    key = name.strip().lower()
    if key not in _ALIASES:
        raise DataError(
            f"unknown emotion class {name!r}; expected one of {', '.join(EMOTIONS_WITH_CONTEMPT)} "
            f"(or a common spelling such as anger, happiness, sadness)"
        )
    return _ALIASES[key]
