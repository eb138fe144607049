"""Temporal smoothing of each track's class probabilities.

A face's expression changes over tenths of a second; a classifier's frame-to-frame output jitters faster than
that (the crop moves by a pixel, the light flickers), which makes labels flicker. ``EMASmoother`` keeps an
exponential moving average per track:

    s_t = a * p_t + (1 - a) * s_prev          (the first frame of a track: s = p)

``a`` is the weight of the newest frame. When k frames passed since the track's previous update (frames dropped
from a live source, a face hidden for a moment), the weight is 1 - (1 - a)^k: what k steps of the average would
have given the newest value, so the smoothing spans the same time whatever the frame rate achieved. a = 1 is no
smoothing. Anything with ``update(track_id, probs, frame)`` and ``forget(ids)`` can stand in for it.

The weight users give (``--smooth A``) is per 1/30 s; ``make_smoother`` turns it into the weight per frame of
the video at hand (``per_frame_weight``), so a 60 frames/s video is smoothed over the same time as a 30 one.
"""
from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

#: The default weight of the newest frame at 30 frames/s: a time constant of 4.5 frames, 0.15 s. On the two
#: shared clips it removes 50-62% of the raw label changes (0.3 removes 43-50%, 0.1 70%, lagging more;
#: benchmarks/bench_video.py flicker).
DEFAULT_ALPHA = 0.2
#: The frame rate at which a smoothing weight is given.
REFERENCE_FPS = 30.0


class Smoother(Protocol):
    def update(self, track_id: int, probs: np.ndarray, frame: int) -> np.ndarray: ...

    def forget(self, track_ids: Iterable[int]) -> None: ...


class EMASmoother:
    """Per-track exponential moving average of probability vectors (see the module docstring)."""

    def __init__(self, alpha: float = DEFAULT_ALPHA):
        if not 0 < alpha <= 1:
            raise ValueError(f"the smoothing weight must be in (0, 1] (1: no smoothing), got {alpha}")
        self.alpha = float(alpha)
        self._state: dict[int, tuple[np.ndarray, int]] = {}

    def update(self, track_id: int, probs: np.ndarray, frame: int) -> np.ndarray:
        """The smoothed probabilities of ``track_id`` after its observation ``probs`` at ``frame``."""
        probs = np.asarray(probs, dtype=np.float64)
        prev = self._state.get(track_id)
        if prev is None or self.alpha == 1.0:
            smoothed = probs.copy()
        else:
            s, last = prev
            k = max(1, frame - last)
            weight = 1.0 - (1.0 - self.alpha) ** k
            smoothed = weight * probs + (1.0 - weight) * s
        self._state[track_id] = (smoothed, frame)
        return smoothed

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop the state of tracks that ended (keeps memory flat over long videos)."""
        for tid in track_ids:
            self._state.pop(tid, None)


def per_frame_weight(alpha: float, fps: float) -> float:
    """The weight per frame at ``fps`` that averages over the same time as ``alpha`` per 1/30 s."""
    return 1.0 - (1.0 - alpha) ** (REFERENCE_FPS / fps)


def make_smoother(smooth: float | Smoother | None, fps: float = REFERENCE_FPS) -> Smoother:
    """A Smoother from a weight per 1/30 s (an ``EMASmoother`` for a video at ``fps``), None (no smoothing) or
    a Smoother object (used as it is)."""
    if smooth is None:
        return EMASmoother(1.0)
    if hasattr(smooth, "update") and hasattr(smooth, "forget"):
        return smooth  # type: ignore[return-value]
    alpha = float(smooth)  # type: ignore[arg-type]
    if not 0 < alpha <= 1:
        raise ValueError(f"the smoothing weight must be in (0, 1] (1: no smoothing), got {alpha}")
    return EMASmoother(per_frame_weight(alpha, fps))
