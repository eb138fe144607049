"""Video figures: a timeline's tracks, each with its smoothed probabilities over time and an emotion ribbon."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.labels import emotion_color  # noqa: E402

if TYPE_CHECKING:
    from ferkit.video.timeline import Timeline


def _rgb(label: str) -> tuple[float, float, float]:
    b, g, r = emotion_color(label)  # the overlay's colours, so the plot reads like the video
    return r / 255, g / 255, b / 255


def plot_timeline(timeline: Timeline, path: str | Path, *, max_tracks: int = 6) -> Path:
    """Per track (the ``max_tracks`` longest, by id): smoothed probability of each emotion over time, and under it
    a ribbon of the smoothed emotion; gaps where the face was not seen stay blank."""
    path = Path(path)
    d = timeline.data()
    labels = timeline.labels
    tracks = timeline.tracks
    counts = {t: int((d["track_id"] == t).sum()) for t in tracks}
    shown = sorted(sorted(tracks, key=lambda t: -counts[t])[:max_tracks])
    if not shown:
        fig, ax = plt.subplots(figsize=(8, 1.6))
        ax.text(0.5, 0.5, f"no faces in {timeline.frames} frames of {Path(timeline.source).name or 'the video'}",
                ha="center", va="center")
        ax.set_axis_off()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path
    end = float(d["time_s"].max()) + 1 / timeline.fps
    fig = plt.figure(figsize=(10, 2.3 * len(shown) + 0.6))
    grid = fig.add_gridspec(2 * len(shown), 1, height_ratios=[4, 0.7] * len(shown), hspace=0.15)
    gap = 2.5 / timeline.fps  # a longer pause between rows is a gap in the track
    for n, tid in enumerate(shown):
        rows = d["track_id"] == tid
        t, probs, emo = d["time_s"][rows], d["probs_smooth"][rows].astype(float), d["emotion_smooth"][rows]
        breaks = np.flatnonzero(np.diff(t) > gap) + 1
        ax = fig.add_subplot(grid[2 * n])
        for k, label in enumerate(labels):
            tt = np.insert(t, breaks, np.nan)
            pp = np.insert(probs[:, k], breaks, np.nan)
            ax.plot(tt, pp, color=_rgb(label), lw=1.3, label=label)
        ax.set(xlim=(0, end), ylim=(0, 1), ylabel="p (smoothed)")
        ax.set_title(f"track {tid}: {counts[tid]} frames, {t.min():.1f}-{t.max():.1f} s", fontsize=9, loc="left")
        ax.tick_params(labelbottom=False)
        ax.grid(alpha=0.3)
        ribbon = fig.add_subplot(grid[2 * n + 1], sharex=ax)
        width = 1 / timeline.fps
        for k, label in enumerate(labels):
            at = t[emo == k]
            if len(at):
                ribbon.broken_barh([(float(s), width) for s in at], (0, 1), color=_rgb(label), lw=0)
        ribbon.set(ylim=(0, 1), yticks=[])
        ribbon.set_ylabel("emotion", rotation=0, ha="right", va="center", fontsize=8)
        if n < len(shown) - 1:
            ribbon.tick_params(labelbottom=False)
    ribbon.set_xlabel("time (s)")
    handles = [plt.Line2D([], [], color=_rgb(label), lw=3) for label in labels]
    title = f"{Path(timeline.source).name}: {len(tracks)} track{'s' if len(tracks) != 1 else ''}"
    if len(shown) < len(tracks):
        title += f" (the {len(shown)} longest shown)"
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 1.0))
    fig.suptitle(title, y=1.0 - 0.35 / fig.get_figheight(), fontsize=10)
    fig.subplots_adjust(top=1.0 - 0.75 / fig.get_figheight(), bottom=0.5 / fig.get_figheight(), left=0.09,
                        right=0.98)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
