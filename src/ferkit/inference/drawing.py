"""Drawing face results onto images: box, label and probability bars per face."""
from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from ferkit.inference.imageio import ImageInput, load_image
from ferkit.inference.results import FaceResult

# BGR colours per emotion, chosen to stay distinguishable on photos.
_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (0, 200, 255),
    "neutral": (200, 200, 200), "sad": (200, 120, 40), "surprise": (0, 140, 255), "contempt": (120, 120, 0),
}


def annotate(image: ImageInput, results: Iterable[FaceResult], *, color: str = "bgr",
             labels: Sequence[str] | None = None) -> np.ndarray:
    """Draw each face's box and top emotion, and a bar per class beside the box; returns a BGR array."""
    canvas = np.ascontiguousarray(load_image(image, color=color)[..., ::-1])  # always a fresh copy
    h, w = canvas.shape[:2]
    thick = max(1, round(max(h, w) / 500))
    for r in results:
        x, y, bw, bh = r.box
        c = _COLORS.get(r.emotion or "", (255, 255, 255))
        cv2.rectangle(canvas, (x, y), (x + bw, y + bh), c, thick, cv2.LINE_AA)
        if r.landmarks:
            for lx, ly in r.landmarks:
                cv2.circle(canvas, (round(lx), round(ly)), thick + 1, (0, 255, 0), -1, cv2.LINE_AA)
        scale = float(np.clip(bw / 220, 0.35, 1.2))
        text = f"{r.emotion} {r.probs[r.emotion]:.0%}" if r.emotion else "too small"
        _label(canvas, text, (x, y), scale, c, thick)
        if r.probs:
            _bars(canvas, r, labels or list(r.probs), scale)
    return canvas


def _label(canvas: np.ndarray, text: str, at: tuple[int, int], scale: float, c: tuple[int, int, int],
           thick: int) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = at
    y = y - 4 if y - th - base - 4 >= 0 else y + th + base + 4  # above the box unless it touches the top
    cv2.rectangle(canvas, (x, y - th - base), (x + tw + 4, y + base // 2), c, -1)
    cv2.putText(canvas, text, (x + 2, y - base // 2), font, scale, (0, 0, 0), thick, cv2.LINE_AA)


def _bars(canvas: np.ndarray, r: FaceResult, labels: Sequence[str], scale: float) -> None:
    font, fscale = cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6
    x, y, bw, bh = r.box
    row = max(8, round(bh / max(len(labels), 1) * 0.6))
    name_w = cv2.getTextSize("surprise", font, fscale, 1)[0][0] + 4
    bar_w = max(20, round(bw * 0.6))
    left = x + bw + 6
    if left + name_w + bar_w > canvas.shape[1]:  # no room on the right: draw on the left
        left = max(0, x - 6 - name_w - bar_w)
    for j, label in enumerate(labels):
        p = r.probs.get(label, 0.0)
        top = y + j * row
        cv2.putText(canvas, label, (left, top + row - 2), font, fscale, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(canvas, label, (left, top + row - 2), font, fscale, (0, 0, 0), 1, cv2.LINE_AA)
        x0 = left + name_w
        cv2.rectangle(canvas, (x0, top + 2), (x0 + bar_w, top + row - 2), (60, 60, 60), -1)
        cv2.rectangle(canvas, (x0, top + 2), (x0 + round(bar_w * p), top + row - 2),
                      _COLORS.get(label, (255, 255, 255)), -1)
