"""Face tracks across frames: IoU matching with an optimal assignment, constant-velocity motion, and a gap.

``IoUTracker.update(detections, frame)`` gives each detection of a frame a track id:

- every live track predicts where its face is now (its last box moved by its velocity, per frame);
- detections and tracks are matched by SciPy's ``linear_sum_assignment`` on 1 - IoU, pairs below
  ``iou_threshold`` refused. Predicting by velocity is what keeps two faces that cross paths on their own ids:
  at the crossing each prediction sits on its own face. A track that missed its last detection is also matched
  against the box where it was last seen, so a face that stopped moving while it was hidden is found again;
- a track unseen for fewer than ``gap`` frames keeps its id when found again; after that it is dropped and the
  face, if it comes back, gets a new id. New faces get the next unused id (ids start at 1, never reused).

``IoUTracker.predict(frame)`` carries the boxes of the tracks seen at the last update to a frame without
detection (``--detect-every N``), with their landmarks moved along.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ferkit.inference.detectors import Detection

_REFUSED = 1e6  # cost of a pair below the IoU threshold: the solver may use it only if nothing else exists


@dataclass
class Track:
    """One face over time: ``box`` (x, y, w, h) where it was last seen at ``frame``, ``velocity`` of its
    centre in pixels per frame."""

    id: int
    box: np.ndarray
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    landmarks: np.ndarray | None = None
    hits: int = 1
    missed: bool = False  # not matched at the last update

    def predicted(self, frame: int) -> np.ndarray:
        box = self.box.copy()
        box[:2] += self.velocity * (frame - self.frame)
        return box


class IoUTracker:
    """Track ids for the detections of successive frames (see the module docstring).

    iou_threshold: the least overlap between a track's predicted box and a detection for them to match.
    gap: frames a track may go unseen and keep its id. momentum: weight of the newest motion in the velocity
    estimate (the rest is the previous estimate), which damps detector jitter.
    """

    def __init__(self, *, iou_threshold: float = 0.3, gap: int = 30, momentum: float = 0.5):
        if not 0 < iou_threshold < 1 or gap < 1 or not 0 < momentum <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1), gap at least 1 and momentum in (0, 1]; got "
                             f"{iou_threshold}, {gap}, {momentum}")
        from ferkit import deps

        # Checked here, not at the first crowded frame: a run should not fail halfway for a missing package.
        deps.require("scipy", for_what="face tracking")
        self.iou_threshold = iou_threshold
        self.gap = gap
        self.momentum = momentum
        self.tracks: list[Track] = []
        self.removed: list[int] = []  # ids dropped by the last update (their per-track state can go)
        self._next_id = 1

    def update(self, detections: Sequence[Detection], frame: int) -> list[int]:
        """Track ids of ``detections`` (in their order) at ``frame``; frames must come in increasing order."""
        expired = [t for t in self.tracks if frame - t.frame - 1 >= self.gap]
        self.removed = [t.id for t in expired]
        self.tracks = [t for t in self.tracks if frame - t.frame - 1 < self.gap]
        boxes = np.array([d.box for d in detections], dtype=np.float64).reshape(-1, 4)
        ids = [0] * len(detections)
        matched_tracks: set[int] = set()
        if self.tracks and len(detections):
            for ti, di in self._match(boxes, frame):
                track = self.tracks[ti]
                self._observe(track, boxes[di], detections[di], frame)
                ids[di] = track.id
                matched_tracks.add(ti)
        for ti, track in enumerate(self.tracks):
            track.missed = ti not in matched_tracks
        for di, det in enumerate(detections):
            if not ids[di]:
                track = Track(self._next_id, boxes[di].copy(), frame, landmarks=_landmarks(det))
                self._next_id += 1
                self.tracks.append(track)
                ids[di] = track.id
        return ids

    def predict(self, frame: int) -> list[tuple[int, Detection]]:
        """The boxes of the tracks matched at the last update, moved to ``frame`` by their velocity; each a
        Detection with score NaN (not detected: carried)."""
        out = []
        for t in self.tracks:
            if t.missed:
                continue
            box = t.predicted(frame)
            shift = box[:2] - t.box[:2]
            marks = None if t.landmarks is None else (t.landmarks + shift).astype(np.float32)
            out.append((t.id, Detection(tuple(float(v) for v in box), float("nan"), marks)))
        return out

    def _match(self, boxes: np.ndarray, frame: int) -> list[tuple[int, int]]:
        predicted = np.stack([t.predicted(frame) for t in self.tracks])
        overlap = iou_matrix(predicted, boxes)
        lost = np.array([t.missed for t in self.tracks])
        if lost.any():
            last_seen = iou_matrix(np.stack([t.box for t in self.tracks]), boxes)
            overlap[lost] = np.maximum(overlap[lost], last_seen[lost])
        ok = overlap >= self.iou_threshold
        if not ok.any():
            return []
        if overlap.shape == (1, 1):
            return [(0, 0)]
        cost = np.where(ok, 1.0 - overlap, _REFUSED)
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]

    def _observe(self, track: Track, box: np.ndarray, det: Detection, frame: int) -> None:
        dt = frame - track.frame
        if dt > 0:
            step = (_centre(box) - _centre(track.box)) / dt
            # The first motion is taken as it is; after that, an average that damps detector jitter.
            track.velocity = step if track.hits == 1 else self.momentum * step + (1 - self.momentum) * track.velocity
        track.box = box.copy()
        track.frame = frame
        track.landmarks = _landmarks(det)
        track.hits += 1


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) box of ``a`` (N x 4) with every box of ``b`` (M x 4): N x M."""
    ax0, ay0, ax1, ay1 = a[:, 0:1], a[:, 1:2], a[:, 0:1] + a[:, 2:3], a[:, 1:2] + a[:, 3:4]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def _centre(box: np.ndarray) -> np.ndarray:
    return box[:2] + box[2:] / 2


def _landmarks(det: Detection) -> np.ndarray | None:
    return None if det.landmarks is None else np.asarray(det.landmarks, dtype=np.float64)
