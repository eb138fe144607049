"""Drawing face results onto images: a box, a label and probability bars per face, laid out so that nothing is
drawn over another face.

``annotate`` returns an annotated BGR copy (``predict --save-annotated``, ``Recognizer.annotate``);
``draw_faces`` draws in place (the video writer, once per frame); ``plan_overlay`` is the layout alone.

Layout: each label and each bar panel goes to the first free spot among a few candidates (label: above the box,
below it, inside its top edge, at shrinking text sizes; bars: right of the box, left, below, above, at the
face's size and then at the smallest readable size). Free means inside the image and clear of every other face's
box and of everything placed before. Bars that fit nowhere are left out rather than drawn across a neighbour.
Faces are placed largest first, so in a crowd the main subjects keep their bars.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np

from ferkit.inference.imageio import ImageInput, load_image
from ferkit.inference.results import FaceResult
from ferkit.labels import emotion_color

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GAP = 2  # pixels between a box and its label
_BAR_GAP = 6  # pixels between a box and its bars
_MIN_LABEL_SCALE = 0.3  # below this Hershey text stops being readable
_MIN_ROW = 8  # pixels per bar row, the smallest that stays readable

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)


@dataclass(frozen=True)
class Bars:
    """A probability panel: one row per label, names in a ``name_w`` column, then bars ``bar_w`` long."""

    left: int
    top: int
    row: int
    name_w: int
    bar_w: int
    font_scale: float
    rows: int

    @property
    def rect(self) -> Rect:
        # + 1: a full bar's rectangle includes its end column.
        return self.left, self.top, self.left + self.name_w + self.bar_w + 1, self.top + self.row * self.rows


@dataclass(frozen=True)
class FaceLayout:
    """Where one face's overlay goes: its label (None: no room anywhere) and bars (None: left out)."""

    label: Rect | None
    label_scale: float
    bars: Bars | None


def annotate(image: ImageInput, results: Iterable[FaceResult], *, color: str = "bgr",
             labels: Sequence[str] | None = None, captions: Sequence[str | None] | None = None,
             banner: str | None = None) -> np.ndarray:
    """A BGR copy of ``image`` with each face's box, label and (where they fit) probability bars.

    ``captions`` replaces the default label text ("happy 87%") per face; ``banner`` is a line of text for a
    free corner (the video writer's frames-per-second counter).
    """
    canvas = np.ascontiguousarray(load_image(image, color=color)[..., ::-1])  # always a fresh copy
    draw_faces(canvas, results, labels=labels, captions=captions, banner=banner)
    return canvas


def draw_faces(canvas: np.ndarray, results: Iterable[FaceResult], *, labels: Sequence[str] | None = None,
               captions: Sequence[str | None] | None = None, banner: str | None = None) -> np.ndarray:
    """Draw onto a BGR uint8 ``canvas`` in place (see ``annotate``); returns it."""
    results = list(results)
    h, w = canvas.shape[:2]
    thick = line_thickness(canvas.shape)
    texts = [caption_of(r) if captions is None or captions[i] is None else str(captions[i])
             for i, r in enumerate(results)]
    names = [list(labels or r.probs) if r.probs else [] for r in results]
    layouts, banner_rect = plan_overlay([r.box for r in results], texts, names, canvas.shape,
                                        banner=banner)
    for r in results:
        x, y, bw, bh = r.box
        c = emotion_color(r.emotion)
        cv2.rectangle(canvas, (x, y), (x + bw, y + bh), c, thick, cv2.LINE_AA)
        for lx, ly in r.landmarks or ():
            cv2.circle(canvas, (round(lx), round(ly)), thick + 1, (0, 255, 0), -1, cv2.LINE_AA)
    for r, text, lay, face_labels in zip(results, texts, layouts, names):
        if lay.label is not None:
            _draw_label(canvas, text, lay.label, lay.label_scale, emotion_color(r.emotion), thick)
        if lay.bars is not None:
            _draw_bars(canvas, r, face_labels, lay.bars)
    if banner and banner_rect is not None:
        scale = _banner_scale(h, w)
        x0, y0, x1, y1 = banner_rect
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), (30, 30, 30), -1)
        (_, th), _ = cv2.getTextSize(banner, _FONT, scale, thick)
        cv2.putText(canvas, banner, (x0 + 3, y0 + 3 + th), _FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return canvas


def caption_of(r: FaceResult) -> str:
    return f"{r.emotion} {r.probs[r.emotion]:.0%}" if r.emotion else "too small"


def line_thickness(shape: tuple[int, ...]) -> int:
    return max(1, round(max(shape[0], shape[1]) / 500))


# ---------------------------------------------------------------------------------------------------------------
# Layout


def plan_overlay(boxes: Sequence[tuple[int, int, int, int]], texts: Sequence[str],
                 bar_labels: Sequence[Sequence[str]], shape: tuple[int, ...], *,
                 banner: str | None = None) -> tuple[list[FaceLayout], Rect | None]:
    """Place each face's label and bars (see the module docstring); ``bar_labels`` empty: no bars for that
    face. Returns one FaceLayout per box, in the order given, and the banner's rectangle (None: no free corner).
    """
    h, w = shape[:2]
    thick = line_thickness(shape)
    # Other faces are obstacles with their outline's thickness around them.
    faces = [(x - thick, y - thick, x + bw + thick + 1, y + bh + thick + 1) for x, y, bw, bh in boxes]
    placed: list[Rect] = []
    banner_rect = None
    if banner:
        banner_rect = _place_banner(banner, h, w, thick, faces)
        if banner_rect is not None:
            placed.append(banner_rect)
    layouts: list[FaceLayout] = [FaceLayout(None, 0.0, None)] * len(boxes)
    for i in sorted(range(len(boxes)), key=lambda k: -boxes[k][2] * boxes[k][3]):  # largest first
        others = faces[:i] + faces[i + 1:]
        label, scale = _place_label(boxes[i], texts[i], thick, h, w, others, placed)
        if label is not None:
            placed.append(label)
        bars = _place_bars(boxes[i], bar_labels[i], scale, label, h, w, others, placed) if bar_labels[i] else None
        if bars is not None:
            placed.append(bars.rect)
        layouts[i] = FaceLayout(label, scale, bars)
    return layouts, banner_rect


def _fits(r: Rect, h: int, w: int, obstacles: Iterable[Rect]) -> bool:
    x0, y0, x1, y1 = r
    if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
        return False
    return not any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in obstacles)


def _label_size(text: str, scale: float, thick: int) -> tuple[int, int, int]:
    (tw, th), base = cv2.getTextSize(text, _FONT, scale, thick)
    return tw + 4, th + base + base // 2, th


def _place_label(box, text: str, thick: int, h: int, w: int, others: list[Rect],
                 placed: list[Rect]) -> tuple[Rect | None, float]:
    x, y, bw, bh = box
    scale = float(np.clip(bw / 220, 0.35, 1.2))
    while True:
        lw, lh, _ = _label_size(text, scale, thick)
        lx = min(x, w - lw) if x + lw > w else x  # slide left rather than run off the right edge
        for cand in ((lx, y - _GAP - lh), (lx, y + bh + _GAP), (x + thick + 1, y + thick + 1)):
            r = (max(0, cand[0]), cand[1], max(0, cand[0]) + lw, cand[1] + lh)
            if _fits(r, h, w, others + placed):
                return r, scale
        if scale <= _MIN_LABEL_SCALE:
            return None, scale
        scale = max(_MIN_LABEL_SCALE, scale * 0.8)


def _place_bars(box, labels: Sequence[str], scale: float, label: Rect | None, h: int, w: int,
                others: list[Rect], placed: list[Rect]) -> Bars | None:
    x, y, bw, bh = box
    n = len(labels)
    sizes = [(max(_MIN_ROW, round(bh / n * 0.6)), scale * 0.6, max(20, round(bw * 0.6))),
             (_MIN_ROW, 0.25, 20)]  # the face's own size, then the smallest readable panel
    for row, fscale, bar_w in sizes:
        name_w = max(cv2.getTextSize(label, _FONT, fscale, 1)[0][0] for label in labels) + 4
        pw, ph = name_w + bar_w + 1, row * n
        top_beside = min(y, h - ph)  # beside the box, slid up when it would run off the bottom
        below = max(y + bh, label[3] if label and label[1] >= y + bh else 0) + _GAP
        above = min(y, label[1] if label and label[3] <= y else y) - _GAP - ph
        for left, top in ((x + bw + _BAR_GAP, top_beside), (x - _BAR_GAP - pw, top_beside), (x, below),
                          (x, above)):
            bars = Bars(left, top, row, name_w, bar_w, fscale, n)
            if _fits(bars.rect, h, w, others + placed):
                return bars
    return None


def _banner_scale(h: int, w: int) -> float:
    return float(np.clip(max(h, w) / 1200, 0.4, 1.0))


def _place_banner(text: str, h: int, w: int, thick: int, faces: list[Rect]) -> Rect | None:
    (tw, th), base = cv2.getTextSize(text, _FONT, _banner_scale(h, w), thick)
    bw, bh = tw + 6, th + base + 6
    for x0, y0 in ((4, 4), (w - 4 - bw, 4), (4, h - 4 - bh), (w - 4 - bw, h - 4 - bh)):
        r = (x0, y0, x0 + bw, y0 + bh)
        if _fits(r, h, w, faces):
            return r
    return None


# ---------------------------------------------------------------------------------------------------------------
# Drawing the planned elements


def _draw_label(canvas: np.ndarray, text: str, rect: Rect, scale: float, c: tuple[int, int, int],
                thick: int) -> None:
    x0, y0, x1, y1 = rect
    _, _, th = _label_size(text, scale, thick)
    patch = canvas[y0:y1, x0:x1]  # drawn through a view: anti-aliased glyph edges cannot leave the rectangle
    patch[:] = c
    cv2.putText(patch, text, (2, th + 1), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


def _draw_bars(canvas: np.ndarray, r: FaceResult, labels: Sequence[str], bars: Bars) -> None:
    # Text and bars are clipped to the panel: Hershey glyphs can reach a pixel or two past their measured box.
    x0, y0, x1, y1 = bars.rect
    panel = canvas[y0:y1, x0:x1]
    for j, label in enumerate(labels):
        p = r.probs.get(label, 0.0)
        top = j * bars.row
        baseline = (0, top + bars.row - 2)
        cv2.putText(panel, label, baseline, _FONT, bars.font_scale, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(panel, label, baseline, _FONT, bars.font_scale, (0, 0, 0), 1, cv2.LINE_AA)
        bx = bars.name_w
        cv2.rectangle(panel, (bx, top + 2), (bx + bars.bar_w, top + bars.row - 2), (60, 60, 60), -1)
        cv2.rectangle(panel, (bx, top + 2), (bx + round(bars.bar_w * p), top + bars.row - 2),
                      emotion_color(label), -1)
