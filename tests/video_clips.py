"""Builders for the video tests (imported by the test_video_* modules): clips generated from the bundled photo
(which Haar detects), a fake camera behind the capture interface, and a fake detector and classifier that make
pipeline tests fast and exact."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferkit.assets import sample_image_path
from ferkit.inference.detectors import Detection
from ferkit.labels import EMOTIONS

# ---------------------------------------------------------------------------------------------------------------
# Clips


def hopper(scale: float = 0.3) -> np.ndarray:
    """The bundled photo, downscaled: at 0.3 it is 154 x 180 with a 68 px face that Haar finds."""
    image = cv2.imread(str(sample_image_path()))
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def write_clip(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def face_frames(n: int = 12, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """One face drifting right by 4 px a frame on a gray background."""
    patch = hopper()
    ph, pw = patch.shape[:2]
    w, h = size
    frames = []
    for i in range(n):
        frame = np.full((h, w, 3), 120, np.uint8)
        x = 20 + 4 * i
        frame[30:30 + ph, x:x + pw] = patch
        frames.append(frame)
    return frames


def crossing_frames(n: int = 20, size: tuple[int, int] = (480, 260)) -> list[np.ndarray]:
    """Two faces crossing paths: A walks right in front, B walks left behind it, 60 px lower; B is hidden for
    about a quarter of the clip while A passes."""
    patch = hopper()
    ph, pw = patch.shape[:2]
    w, h = size
    frames = []
    for i in range(n):
        frame = np.full((h, w, 3), 120, np.uint8)
        xa = round(i * (w - pw) / (n - 1))
        xb = w - pw - xa
        frame[70:70 + ph, xb:xb + pw] = patch[:, ::-1]  # B, behind
        frame[10:10 + ph, xa:xa + pw] = patch  # A, in front
        frames.append(frame)
    return frames


def blank_frames(n: int = 8, size: tuple[int, int] = (160, 120)) -> list[np.ndarray]:
    return [np.full((size[1], size[0], 3), 90 + 5 * i, np.uint8) for i in range(n)]


def square_frames(n: int, boxes_at, size: tuple[int, int] = (200, 150)) -> list[np.ndarray]:
    """Black frames with white squares where ``boxes_at(i)`` says (x, y, side) for frame i."""
    frames = []
    for i in range(n):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        for x, y, s in boxes_at(i):
            frame[y:y + s, x:x + s] = 255
        frames.append(frame)
    return frames


# ---------------------------------------------------------------------------------------------------------------
# Fakes behind the real interfaces


class SquareDetector:
    """A FaceDetector that finds the white squares of ``square_frames`` (exact boxes, score 0.9); counts calls."""

    name = "squares"

    def __init__(self):
        self.calls = 0

    def detect(self, image: np.ndarray, color: str = "bgr") -> list[Detection]:
        self.calls += 1
        gray = image if image.ndim == 2 else image[..., 0]
        n, _, stats, _ = cv2.connectedComponentsWithStats((gray > 200).astype(np.uint8))
        found = [Detection(tuple(float(v) for v in stats[k, :4]), 0.9, None) for k in range(1, n)]
        return sorted(found, key=lambda d: d.box[0])


class FixedClassifier:
    """A Classifier whose answer depends on each crop's brightness (bright: happy, dark: sad); records the
    number of faces per call, so tests can count forward passes."""

    labels = EMOTIONS
    input_size = crop_size = 24
    crop_margin = 0.0
    tta = "none"
    description = "fixed test classifier"

    def __init__(self):
        self.calls: list[int] = []

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        self.calls.append(len(faces))
        bright = faces.reshape(len(faces), -1).mean(1) > 127
        p = np.full((len(faces), len(self.labels)), 0.05, np.float32)
        p[bright, self.labels.index("happy")] = 0.7
        p[~bright, self.labels.index("sad")] = 0.7
        return p


class FakeCamera:
    """A ``cv2.VideoCapture``-like camera: ``frames`` delivered at ``fps`` in real time (read blocks until the
    next frame is due, as a camera's does). ``fail_after``: read fails from that frame on (a stream that drops);
    ``raise_after``: read raises instead."""

    def __init__(self, frames: list[np.ndarray], fps: float = 100.0, *, fail_after: int | None = None,
                 raise_after: int | None = None):
        self.frames = frames
        self.fps = fps
        self.fail_after = fail_after
        self.raise_after = raise_after
        self.read_count = 0
        self.released = False
        self._t0: float | None = None

    def read(self):
        if self._t0 is None:
            self._t0 = time.monotonic()
        i = self.read_count
        if self.raise_after is not None and i >= self.raise_after:
            raise OSError("connection reset by peer")
        if i >= len(self.frames) or (self.fail_after is not None and i >= self.fail_after):
            return False, None
        delay = self._t0 + i / self.fps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.read_count += 1
        return True, self.frames[i].copy()

    def get(self, prop: int) -> float:
        h, w = self.frames[0].shape[:2]
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_WIDTH: w, cv2.CAP_PROP_FRAME_HEIGHT: h}.get(prop, 0.0)

    def release(self) -> None:
        self.released = True


def video_info(path: Path) -> tuple[int, int, int]:
    """(frames decoded, width, height) of a video file, counting by decoding rather than trusting the header."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} does not open"
    n = 0
    while cap.read()[0]:
        n += 1
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    cap.release()
    return n, w, h


# ---------------------------------------------------------------------------------------------------------------
# Fixtures (imported by the test modules that use them)


@pytest.fixture(scope="session")
def video_cache(tmp_path_factory) -> Path:
    """One cache dir for the video tests: the default model's flip export is made once per session, not per test."""
    return tmp_path_factory.mktemp("video-cache")


@pytest.fixture
def shared_cache(video_cache, monkeypatch) -> Path:
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(video_cache))
    return video_cache
