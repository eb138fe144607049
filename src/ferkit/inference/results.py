"""What the Recognizer returns for each face: plain data that turns into the ``predict --json`` contract."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FaceResult:
    """One face: ``box`` (x, y, w, h) in image pixels clipped to the image, the detector's ``score``, 5
    ``landmarks`` (x, y) or None, the top ``emotion`` and ``probs`` {label: p}. A face smaller than the
    recognizer's ``min_face`` is reported with ``emotion=None`` and empty ``probs``."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None
    emotion: str | None
    probs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data in the shape of the ``ferkit predict --json`` contract."""
        return {
            "box": list(self.box),
            "score": round(self.score, 4),
            "landmarks": None if self.landmarks is None else [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "emotion": self.emotion,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }
