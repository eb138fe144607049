"""The face tracker: ids follow faces through crossings and short gaps; new faces get new ids; the assignment is
optimal, not greedy."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ferkit.inference.detectors import Detection
from ferkit.video.tracker import IoUTracker, iou_matrix


def det(x: float, y: float, w: float = 40, h: float = 40, landmarks=None) -> Detection:
    return Detection((float(x), float(y), float(w), float(h)), 0.9, landmarks)


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [50, 50, 5, 5]], float)
    expected = [[1.0, 50 / 150, 0.0], [0.0, 0.0, 0.0]]
    assert iou_matrix(a, b) == pytest.approx(np.array(expected))


def test_two_faces_that_cross_paths_keep_their_ids():
    tracker = IoUTracker(gap=5)
    ids_of_a, ids_of_b = set(), set()
    for f in range(21):  # A walks right, B walks left 15 px lower; at f = 10 they overlap most (IoU 0.45)
        a, b = det(10 * f, 0), det(200 - 10 * f, 15)
        ids = tracker.update([a, b] if f % 2 else [b, a], f)  # the detector's order says nothing
        id_a, id_b = (ids[0], ids[1]) if f % 2 else (ids[1], ids[0])
        ids_of_a.add(id_a)
        ids_of_b.add(id_b)
    assert len(ids_of_a) == 1 and len(ids_of_b) == 1 and ids_of_a != ids_of_b


def test_a_face_hidden_while_another_passes_in_front_keeps_its_id():
    tracker = IoUTracker(gap=10)
    seen_b = set()
    for f in range(21):
        a, b = det(10 * f, 0), det(200 - 10 * f, 25)
        hidden = 8 <= f <= 12  # B behind A: the detector sees A only
        ids = tracker.update([a] if hidden else [a, b], f)
        assert ids[0] == 1  # A is always track 1
        if not hidden:
            seen_b.add(ids[1])
    assert seen_b == {2}


def test_a_track_lost_for_fewer_than_gap_frames_keeps_its_id_and_one_lost_for_gap_frames_does_not():
    gap = 5
    tracker = IoUTracker(gap=gap)
    assert tracker.update([det(50, 50)], 0) == [1]
    for f in range(1, gap):  # gap - 1 frames without it
        assert tracker.update([], f) == []
    assert tracker.update([det(52, 50)], gap) == [1]
    for f in range(gap + 1, 2 * gap + 1):  # gap frames without it
        tracker.update([], f)
    assert tracker.update([det(52, 50)], 2 * gap + 1) == [2]
    assert tracker.removed == [1]  # so the pipeline can drop its smoothing state


def test_a_face_that_stopped_while_hidden_is_found_where_it_was_last_seen():
    tracker = IoUTracker(gap=10)
    for f in range(5):
        tracker.update([det(20 * f, 0)], f)  # 20 px a frame to the right
    for f in range(5, 9):
        tracker.update([], f)  # hidden; the prediction walks on to x = 160
    assert tracker.update([det(82, 0)], 9) == [1]  # it had stopped near x = 80


def test_new_faces_get_new_ids_and_ids_are_never_reused():
    tracker = IoUTracker(gap=2)
    assert tracker.update([det(0, 0)], 0) == [1]
    assert tracker.update([det(1, 0), det(300, 0)], 1) == [1, 2]
    for f in range(2, 6):
        tracker.update([], f)
    assert tracker.tracks == []
    assert tracker.update([det(0, 0)], 6) == [3]


def test_the_assignment_is_optimal_not_greedy():
    tracker = IoUTracker(iou_threshold=0.2, gap=5)
    tracker.update([det(0, 0, 100, 100), det(60, 0, 100, 100)], 0)
    d1, d2 = det(-30, 0, 100, 100), det(25, 0, 100, 100)
    iou = iou_matrix(np.array([t.box for t in tracker.tracks]), np.array([d1.box, d2.box]))
    # Greedy would give track 1 its best detection, d2, and leave track 2 with d1, below the threshold.
    assert iou[0, 1] > iou[0, 0] and iou[1, 0] < 0.2 and iou[1, 1] > 0.2
    assert tracker.update([d1, d2], 1) == [1, 2]


def test_predict_carries_boxes_and_landmarks_by_the_velocity_of_the_last_detections():
    tracker = IoUTracker(gap=10)
    marks = np.array([[10, 10], [30, 10], [20, 20], [12, 30], [28, 30]], np.float32)
    tracker.update([det(0, 0, landmarks=marks)], 0)
    tracker.update([det(6, 3, landmarks=marks + [6, 3])], 2)  # 3 px right, 1.5 px down a frame
    tracker.update([det(500, 500)], 3)  # track 1 missed here: not carried; the new face 2 is
    assert [tid for tid, _ in tracker.predict(4)] == [2]
    tracker = IoUTracker(gap=10)
    tracker.update([det(0, 0, landmarks=marks)], 0)
    tracker.update([det(6, 3, landmarks=marks + [6, 3])], 2)
    ((tid, carried),) = tracker.predict(4)
    assert tid == 1 and carried.box == pytest.approx((12, 6, 40, 40)) and math.isnan(carried.score)
    assert carried.landmarks == pytest.approx(marks + [12, 6])


def test_bad_settings_are_refused():
    for kwargs in ({"iou_threshold": 0}, {"iou_threshold": 1}, {"gap": 0}, {"momentum": 0}):
        with pytest.raises(ValueError):
            IoUTracker(**kwargs)


def test_without_scipy_the_tracker_says_what_to_install(monkeypatch):
    from ferkit import deps

    real = deps.available
    monkeypatch.setattr(deps, "available", lambda name: name != "scipy" and real(name))
    with pytest.raises(deps.MissingDependency, match="SciPy.*pip install"):
        IoUTracker()
