"""Outputs that show the video: the annotated video file, written on its own thread, and the live window.

- ``draw_overlay``: one frame's overlay, in place: per face its box, ``#track emotion confidence`` (smoothed) and
  probability bars where they fit (``ferkit.inference.drawing``: nothing is drawn over another face), and a
  frames-per-second counter in a free corner.
- ``AnnotatedVideoWriter``: a writer thread behind a bounded queue: it draws the overlay and encodes, so
  inference never waits for the encoder (unless the encoder falls behind by the whole queue). ``close()``
  finalises the file; a run stopped by Ctrl-C still gets a playable video.
- ``Window``: the overlay on screen where OpenCV has a GUI (``q`` or Esc quits); ``Window.open`` returns None on a
  headless OpenCV or without a display.
- ``RateMeter``: frames per second over the last second or so.
"""
from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from ferkit.inference.drawing import draw_faces
from ferkit.video.sources import VideoError

log = logging.getLogger(__name__)

# Container suffix -> codec FourCC. mp4v (MPEG-4 Part 2) is what pip's OpenCV can encode into MP4 everywhere (its
# FFmpeg has no H.264 encoder); MJPG is the safe AVI codec.
VIDEO_CODECS = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def check_video_path(path: str | Path) -> Path:
    from ferkit.paths import check_writable

    path = Path(path)
    if path.suffix.lower() not in VIDEO_CODECS:
        raise VideoError(f"--out {path}: the annotated video must be one of {', '.join(VIDEO_CODECS)}")
    return check_writable(path, "--out")


def draw_overlay(image: np.ndarray, faces: Sequence, labels: Sequence[str], fps: float | None = None) -> np.ndarray:
    """Draw the faces of one frame (TrackedFace objects) onto the BGR ``image`` in place; returns it."""
    results = [f.result(smoothed=True) for f in faces]
    captions = [f"#{f.track_id} {r.emotion} {r.probs[r.emotion]:.0%}" if r.emotion else f"#{f.track_id}"
                for f, r in zip(faces, results)]
    banner = f"{fps:.0f} fps" if fps else None
    return draw_faces(image, results, labels=labels, captions=captions, banner=banner)


class AnnotatedVideoWriter:
    """Draws and encodes frames on a thread of its own; ``write`` blocks only when ``capacity`` frames wait."""

    _END = object()

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int], labels: Sequence[str], *,
                 capacity: int = 8):
        self.path = Path(path)
        self.size = size
        self.labels = tuple(labels)
        self.frames = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fourcc = VIDEO_CODECS.get(self.path.suffix.lower())
        if fourcc is None:
            raise VideoError(f"{path}: the annotated video must be one of {', '.join(VIDEO_CODECS)}")
        self._video = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), float(fps), size)
        if not self._video.isOpened():
            raise VideoError(f"cannot write {path}: OpenCV could not open a {fourcc} encoder for it")
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="ferkit-video-writer", daemon=True)
        self._thread.start()

    def write(self, frame, fps: float | None = None, drawn: np.ndarray | None = None) -> None:
        """Queue a VideoFrame (its image is drawn on in place) or an image already drawn (``drawn``)."""
        if self._error is not None:
            raise VideoError(f"writing {self.path} failed: {self._error}") from self._error
        self._queue.put((frame, fps, drawn))

    def close(self) -> None:
        """Write what is queued and finalise the file (its index: without it an MP4 does not play)."""
        if self._thread.is_alive():
            self._queue.put(self._END)
            self._thread.join()
        self._video.release()
        if self._error is not None:
            raise VideoError(f"writing {self.path} failed: {self._error}") from self._error

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._END:
                return
            if self._error is not None:
                continue  # keep draining so the producer never blocks on a dead writer
            frame, fps, drawn = item
            try:
                image = drawn if drawn is not None else draw_overlay(frame.image, frame.faces, self.labels, fps)
                if (image.shape[1], image.shape[0]) != self.size:  # a folder of frames of mixed sizes
                    image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
                self._video.write(image)
                self.frames += 1
            except Exception as exc:  # noqa: BLE001 - reported to the producer on its next call
                self._error = exc


class Window:
    """An OpenCV window showing the overlay; ``show`` returns False once the user pressed q or Esc or closed it."""

    def __init__(self, title: str):
        self.title = title

    @classmethod
    def open(cls, name: str) -> Window | None:
        """A window, or None (with one log line) where there is no display or OpenCV has no GUI."""
        if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            log.info("no display: running headless (no window)")
            return None
        title = f"ferkit video: {name} (q quits)"
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL)
        except cv2.error:
            log.info("this OpenCV has no GUI (opencv-python-headless): running headless; install opencv-python "
                     "for a window")
            return None
        return cls(title)

    def show(self, image: np.ndarray) -> bool:
        cv2.imshow(self.title, image)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            return False
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


class RateMeter:
    """Frames per second over the last ``window`` ticks (None until two ticks)."""

    def __init__(self, window: int = 30):
        self._times: collections.deque[float] = collections.deque(maxlen=window)

    def tick(self) -> float | None:
        self._times.append(time.perf_counter())
        if len(self._times) < 2:
            return None
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else None
