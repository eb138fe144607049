"""The overlay in crowded frames (video and `predict --save-annotated` share it): nothing is drawn over another
face, and probability bars appear only where they fit."""
from __future__ import annotations

import numpy as np

from ferkit.inference.drawing import annotate, draw_faces, plan_overlay
from ferkit.inference.results import FaceResult
from ferkit.labels import EMOTIONS

BAR_BACKGROUND = np.array([60, 60, 60])


def face(box, emotion="happy") -> FaceResult:
    probs = {e: (0.7 if e == emotion else 0.05) for e in EMOTIONS}
    return FaceResult(box, 0.9, None, emotion, probs)


def interior(box, pad: int = 3):
    x, y, w, h = box
    return slice(y + pad, y + h - pad), slice(x + pad, x + w - pad)


def intersects(r, box) -> bool:
    x, y, w, h = box
    return r[0] < x + w and x < r[2] and r[1] < y + h and y < r[3]


def plan(results, shape, banner=None):
    return plan_overlay([r.box for r in results], [f"{r.emotion} 70%" for r in results],
                        [EMOTIONS] * len(results), shape, banner=banner)


def test_in_a_row_of_faces_no_label_or_bar_covers_another_face():
    # Five faces 12 px apart, as in a group photo: there is no room for bars between them.
    results = [face((20 + 92 * i, 120, 80, 80)) for i in range(5)]
    shape = (400, 500, 3)
    layouts, _ = plan(results, shape)
    for i, lay in enumerate(layouts):
        for rect in (lay.label, lay.bars.rect if lay.bars else None):
            if rect is None:
                continue
            assert 0 <= rect[0] and 0 <= rect[1] and rect[2] <= 500 and rect[3] <= 400
            assert not any(intersects(rect, r.box) for j, r in enumerate(results) if j != i), (i, rect)
    assert all(lay.bars is not None for lay in layouts)  # below the faces there is room for every panel
    out = annotate(np.zeros(shape, np.uint8), results)
    for r in results:
        assert not out[interior(r.box)].any()  # every face's inside is untouched


def test_the_old_overlay_bug_bars_across_the_neighbour_is_gone():
    left, right = face((40, 40, 100, 100)), face((150, 40, 100, 100), "sad")  # 10 px apart
    out = annotate(np.zeros((200, 300, 3), np.uint8), [left, right])
    assert not out[interior(right.box)].any() and not out[interior(left.box)].any()
    # No room beside either face: the bars went below them, at the smallest readable size.
    bars = (out == BAR_BACKGROUND).all(axis=2)
    assert bars[141:].any() and not bars[:141].any()


def test_bars_are_left_out_where_they_fit_nowhere_and_labels_still_shown():
    # A 3 x 3 grid of faces filling the frame.
    results = [face((4 + 66 * c, 4 + 66 * r, 60, 60)) for r in range(3) for c in range(3)]
    layouts, _ = plan(results, (202, 202, 3))
    assert all(lay.bars is None for lay in layouts)
    assert all(lay.label is not None for lay in layouts)  # inside each face's own box, at a smaller size
    out = annotate(np.zeros((202, 202, 3), np.uint8), results)
    assert not (out == BAR_BACKGROUND).all(axis=2).any()


def test_every_pixel_drawn_belongs_to_the_face_that_owns_it():
    results = [face((30, 60, 90, 90)), face((130, 50, 70, 70), "sad"), face((260, 150, 60, 60), "fear")]
    shape = (260, 360, 3)
    layouts, _ = plan(results, shape)
    out = draw_faces(np.zeros(shape, np.uint8), results, labels=EMOTIONS)
    allowed = np.zeros(shape[:2], bool)
    for r, lay in zip(results, layouts):
        x, y, w, h = r.box
        allowed[max(0, y - 2):y + h + 3, max(0, x - 2):x + w + 3] = True  # the box and its outline
        allowed[interior(r.box)] = False
        for rect in (lay.label, lay.bars.rect if lay.bars else None):
            if rect:
                allowed[rect[1]:rect[3], rect[0]:rect[2]] = True
    assert not out.any(axis=2)[~allowed].any()


def test_the_banner_takes_a_free_corner():
    shape = (240, 320, 3)
    results = [face((0, 0, 90, 90))]  # a face in the top-left corner
    _, banner = plan(results, shape, banner="30 fps")
    assert banner is not None and not intersects(banner, results[0].box) and banner[0] > 160
    out = annotate(np.zeros(shape, np.uint8), results, banner="30 fps")
    assert out[banner[1]:banner[3], banner[0]:banner[2]].any()


def test_captions_replace_the_label_text():
    shape = (200, 300, 3)
    a = annotate(np.zeros(shape, np.uint8), [face((100, 60, 80, 80))])
    b = annotate(np.zeros(shape, np.uint8), [face((100, 60, 80, 80))], captions=["#12 happy 70%"])
    assert not np.array_equal(a[:60], b[:60]) and np.array_equal(a[60:], b[60:])
