"""Drawing face results: a BGR copy with a box, a label and probability bars per face."""
from __future__ import annotations

import numpy as np

from ferkit.inference.drawing import annotate
from ferkit.inference.results import FaceResult
from ferkit.labels import EMOTIONS

HAPPY = np.array([0, 200, 255])  # BGR, the colour drawing.py gives "happy"
BAR_BACKGROUND = np.array([60, 60, 60])
BOX = (50, 80, 100, 100)  # x, y, w, h


def result(box=BOX, emotion: str | None = "happy", p: float = 1.0, landmarks=None) -> FaceResult:
    probs = {} if emotion is None else {label: (p if label == emotion else (1 - p) / 6) for label in EMOTIONS}
    return FaceResult(box, 0.9, landmarks, emotion, probs)


def canvas(width: int = 400) -> np.ndarray:
    return np.zeros((300, width, 3), np.uint8)


def tinted(pixel: np.ndarray, colour: np.ndarray) -> bool:
    """The pixel is ``colour`` blended with black (anti-aliased lines), at least 80% of it."""
    s = pixel.max() / colour.max()
    return s >= 0.8 and np.abs(pixel - s * colour).max() <= 2


def colour_mask(image: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return (image == colour).all(axis=2)


def test_returns_a_bgr_copy_and_leaves_the_input_alone():
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (300, 400, 3), np.uint8)
    before = bgr.copy()
    out = annotate(bgr, [result()])
    assert out.shape == bgr.shape and out.dtype == np.uint8 and not np.shares_memory(out, bgr)
    assert np.array_equal(bgr, before) and not np.array_equal(out, bgr)
    assert np.array_equal(out[-20:, :40], bgr[-20:, :40])  # far from the face: the input's pixels, in BGR order
    assert np.array_equal(annotate(bgr[..., ::-1].copy(), [result()], color="rgb"), out)


def test_no_results_give_an_unchanged_copy():
    bgr = np.random.default_rng(1).integers(0, 256, (60, 80, 3), np.uint8)
    out = annotate(bgr, [])
    assert np.array_equal(out, bgr) and not np.shares_memory(out, bgr)
    gray = bgr[..., 0].copy()
    assert np.array_equal(annotate(gray, []), np.dstack([gray] * 3))


def test_the_box_is_drawn_in_the_emotion_colour_and_its_inside_is_untouched():
    out = annotate(canvas(), [result()])
    x, y, w, h = BOX
    for px, py in ((x, y + h // 2), (x + w, y + h // 2), (x + w // 2, y + h)):  # left, right, bottom edges
        assert tinted(out[py, px].astype(float), HAPPY), (px, py, out[py, px])
    assert not out[y + 2:y + h - 1, x + 2:x + w - 1].any()
    assert colour_mask(out[:y, x:x + w], HAPPY).any()  # the label sits above the box


def test_landmarks_are_marked():
    marks = ((80.0, 110.0), (120.0, 110.0), (100.0, 130.0), (85.0, 150.0), (115.0, 150.0))
    out = annotate(canvas(), [result(landmarks=marks)])
    for lx, ly in marks:
        assert tuple(out[round(ly), round(lx)]) == (0, 255, 0)


def test_bars_beside_the_box_grow_with_the_probability():
    x, y, w, h = BOX

    def bar_length(p: float) -> int:
        out = annotate(canvas(), [result(p=p)])
        right = out[y:y + h, x + w + 1:]
        assert colour_mask(right, BAR_BACKGROUND).any()  # every class has a bar
        assert not out[:, :x - 1].any()  # nothing left of the box
        return int(colour_mask(right, HAPPY).sum(1).max())

    full, half = bar_length(1.0), bar_length(0.5)
    assert full > 20 and half - 1 == (full - 1) // 2


def test_bars_go_left_of_the_box_when_there_is_no_room_on_the_right():
    image = canvas(width=260)
    box = (150, 80, 100, 100)  # 10 px to the right edge
    out = annotate(image, [result(box=box)])
    assert colour_mask(out[:, :150], BAR_BACKGROUND).any() and colour_mask(out[80:180, :150], HAPPY).any()
    assert not colour_mask(out[:, 251:], BAR_BACKGROUND).any()


def test_faces_too_small_to_classify_get_a_white_box_a_label_and_no_bars():
    x, y, w, h = BOX
    out = annotate(canvas(), [result(emotion=None)])
    assert tinted(out[y + h // 2, x].astype(float), np.array([255, 255, 255]))
    assert out[:y, x:x + w].any()  # "too small", above the box
    assert not out[y:, x + w + 2:].any()  # no bars beside it


def test_a_tiny_face_at_the_top_gets_its_label_below_the_box_top():
    out = annotate(canvas(), [result(box=(10, 2, 5, 5), emotion=None)])
    assert out[8:30, 10:60].any()  # the label runs down and right from the box, inside the image
    assert not out[40:].any()  # and nothing else is drawn: no bars
