"""The timeline of a video: one row per face per processed frame, and a summary per track.

Columns, the same in CSV, JSON rows, Parquet and pandas, in this order:

    frame, time_s, track_id, x, y, w, h, det_score, emotion, p_<label>..., emotion_smooth, p_smooth_<label>...

- ``frame``: index in the source (gaps: frames a live source dropped); ``time_s``: its time in seconds;
- ``track_id``: the face's track (from 1); ``x, y, w, h``: its box in pixels;
- ``det_score``: the detector's confidence; empty (NaN) on frames where the tracker carried the box between
  detections (``--detect-every``);
- ``emotion``, ``p_<label>``: this frame's own classification;
- ``emotion_smooth``, ``p_smooth_<label>``: the track's moving average up to this frame (``smoothing``); equal to
  the raw columns when smoothing is off, so the columns never change with the options.

A face too small to classify has an empty emotion and empty probabilities. Rows are kept in compact column
chunks (about 100 bytes per row with 7 labels: 11 MB for an hour of one face at 30 frames/s).

Summary (``Timeline.summary()``, ``write_summary``), one row per track: ``track_id, first_s, last_s, duration_s``
(last - first + one frame), ``frames`` (rows), ``dominant`` (the smoothed emotion the track shows most),
``share_<label>`` (share of its classified rows whose smoothed emotion is that label) and ``mean_p_<label>``
(mean raw probability).
"""
from __future__ import annotations

import csv as _csv
import json as _json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from ferkit.errors import FerkitError
from ferkit.paths import atomic_write, check_writable

if TYPE_CHECKING:
    from ferkit.video.pipeline import VideoFrame

_CHUNK = 4096  # rows per storage chunk


def timeline_columns(labels: Sequence[str]) -> list[str]:
    return ["frame", "time_s", "track_id", "x", "y", "w", "h", "det_score", "emotion",
            *[f"p_{label}" for label in labels], "emotion_smooth", *[f"p_smooth_{label}" for label in labels]]


def summary_columns(labels: Sequence[str]) -> list[str]:
    return ["track_id", "first_s", "last_s", "duration_s", "frames", "dominant",
            *[f"share_{label}" for label in labels], *[f"mean_p_{label}" for label in labels]]


@dataclass(frozen=True)
class TrackSummary:
    track_id: int
    first_s: float
    last_s: float
    duration_s: float
    frames: int
    dominant: str | None
    share: dict[str, float]
    mean_probs: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "first_s": round(self.first_s, 4), "last_s": round(self.last_s, 4),
                "duration_s": round(self.duration_s, 4), "frames": self.frames, "dominant": self.dominant,
                "share": {k: round(v, 4) for k, v in self.share.items()},
                "mean_probs": {k: _round(v, 6) for k, v in self.mean_probs.items()}}

    def row(self, labels: Sequence[str]) -> list[Any]:
        d = self.to_dict()
        return [d["track_id"], d["first_s"], d["last_s"], d["duration_s"], d["frames"], d["dominant"],
                *[d["share"][label] for label in labels], *[d["mean_probs"][label] for label in labels]]


class Timeline:
    """Rows of a video's faces (see the module docstring), with the run's facts: ``source``, ``fps``,
    ``labels``, ``frames`` (processed), ``dropped`` (live frames not processed), ``interrupted`` (Ctrl-C),
    ``stopped_by`` (None, "interrupt" or "window") and ``elapsed_s``."""

    def __init__(self, labels: Sequence[str], *, fps: float, source: str = ""):
        self.labels = tuple(labels)
        self.fps = float(fps)
        self.source = source
        self.frames = 0
        self.dropped = 0
        self.interrupted = False
        self.stopped_by: str | None = None
        self.elapsed_s = 0.0
        self._chunks: list[dict[str, np.ndarray]] = []
        self._n = 0  # rows in the last chunk
        self._cache: dict[str, np.ndarray] | None = None
        self._sink: tuple[IO[str], Any] | None = None

    @property
    def columns(self) -> list[str]:
        return timeline_columns(self.labels)

    def __len__(self) -> int:
        return (len(self._chunks) - 1) * _CHUNK + self._n if self._chunks else 0

    def __repr__(self) -> str:
        return (f"Timeline({len(self)} rows, {len(self.tracks)} tracks, {self.frames} frames, source={self.source!r})")

    @property
    def tracks(self) -> list[int]:
        return sorted(set(self.data()["track_id"].tolist()))

    # -- building ----------------------------------------------------------------------------------------------

    def add(self, frame: VideoFrame) -> None:
        """Append one row per face of ``frame`` (a frame without faces still counts in ``frames``)."""
        self.frames += 1
        if not frame.faces:
            return
        start = len(self)
        index = {label: k for k, label in enumerate(self.labels)}
        for face in frame.faces:
            if not self._chunks or self._n == _CHUNK:
                self._chunks.append(_new_chunk(len(self.labels)))
                self._n = 0
            c, i = self._chunks[-1], self._n
            c["frame"][i], c["time_s"][i], c["track_id"][i] = frame.index, frame.time_s, face.track_id
            c["box"][i] = face.box
            c["det_score"][i] = face.score
            c["emotion"][i] = index.get(face.emotion, -1) if face.emotion else -1
            c["emotion_smooth"][i] = index.get(face.emotion_smooth, -1) if face.emotion_smooth else -1
            c["probs"][i] = [face.probs.get(label, np.nan) for label in self.labels] if face.probs else np.nan
            c["probs_smooth"][i] = ([face.probs_smooth.get(label, np.nan) for label in self.labels]
                                    if face.probs_smooth else np.nan)
            self._n += 1
        self._cache = None
        if self._sink is not None:
            f, writer = self._sink
            for row in self._rows(start, len(self)):
                writer.writerow([_csv_cell(v) for v in row])
            f.flush()  # an interrupted or killed run leaves every row so far

    def stream_csv(self, path: str | Path) -> None:
        """Write the header to ``path`` now and every row added from here on as it comes (flushed per frame), so
        the file is valid whenever the run stops. ``close()`` ends it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "w", newline="")
        writer = _csv.writer(f)
        writer.writerow(self.columns)
        for row in self._rows(0, len(self)):
            writer.writerow([_csv_cell(v) for v in row])
        f.flush()
        self._sink = (f, writer)

    def close(self) -> None:
        if self._sink is not None:
            self._sink[0].close()
            self._sink = None

    # -- reading -----------------------------------------------------------------------------------------------

    def data(self) -> dict[str, np.ndarray]:
        """The rows as arrays: frame, time_s, track_id, box (N x 4), det_score, emotion and emotion_smooth (label
        indices, -1: none), probs and probs_smooth (N x labels, NaN: not classified)."""
        if self._cache is None:
            k = len(self.labels)
            if not self._chunks:
                self._cache = {name: a[:0] for name, a in _new_chunk(k, 0).items()}
            else:
                parts = [{n: a[:_CHUNK] for n, a in c.items()} for c in self._chunks[:-1]]
                parts.append({n: a[:self._n] for n, a in self._chunks[-1].items()})
                self._cache = {n: np.concatenate([p[n] for p in parts]) for n in parts[0]}
        return self._cache

    def rows(self) -> Iterator[dict[str, Any]]:
        """Each row as a {column: value} dict (None for empty cells)."""
        cols = self.columns
        for row in self._rows(0, len(self)):
            yield dict(zip(cols, row))

    def _rows(self, start: int, stop: int) -> Iterator[list[Any]]:
        # Straight from the chunks, not from data(): the CSV streamed per frame must cost the same at row
        # 100,000 as at row 10, and concatenating every chunk per frame would not.
        labels = self.labels
        for i in range(start, stop):
            c, j = self._chunks[i // _CHUNK], i % _CHUNK
            emo, emo_s = int(c["emotion"][j]), int(c["emotion_smooth"][j])
            yield [int(c["frame"][j]), round(float(c["time_s"][j]), 4), int(c["track_id"][j]),
                   *map(int, c["box"][j]), _round(float(c["det_score"][j]), 4),
                   labels[emo] if emo >= 0 else None, *[_round(float(p), 6) for p in c["probs"][j]],
                   labels[emo_s] if emo_s >= 0 else None, *[_round(float(p), 6) for p in c["probs_smooth"][j]]]

    # -- writing -----------------------------------------------------------------------------------------------

    def to_csv(self, path: str | Path) -> Path:
        path = Path(path)
        with atomic_write(path, "w") as f:
            writer = _csv.writer(f)
            writer.writerow(self.columns)
            for row in self._rows(0, len(self)):
                writer.writerow([_csv_cell(v) for v in row])
        return path

    def to_json(self, path: str | Path) -> Path:
        """One object: the run's facts (source, fps, labels, frames, dropped, interrupted), ``columns`` and
        ``rows`` (one {column: value} object per row, null for empty cells)."""
        path = Path(path)
        meta = {"source": self.source, "fps": round(self.fps, 4), "labels": list(self.labels),
                "frames": self.frames, "dropped": self.dropped, "interrupted": self.interrupted,
                "columns": self.columns}
        with atomic_write(path, "w") as f:
            # One row per line: valid JSON that stays greppable and streams through line-based tools.
            head = _json.dumps(meta)[:-1]
            f.write(head + ', "rows": [')
            for n, row in enumerate(self.rows()):
                f.write(("\n" if n == 0 else ",\n") + _json.dumps(row))
            f.write("\n]}\n")
        return path

    def to_pandas(self):
        """A pandas DataFrame with the timeline's columns (needs pandas)."""
        from ferkit import deps

        deps.require("pandas", for_what="Timeline.to_pandas")
        import pandas as pd

        return pd.DataFrame(self._column_arrays(), columns=self.columns)

    def to_parquet(self, path: str | Path) -> Path:
        """The timeline as a Parquet file (needs pyarrow): integer, float32 and string columns."""
        from ferkit import deps

        deps.require("pyarrow", for_what="writing the timeline as Parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = self._column_arrays()
        table = pa.table({name: pa.array(arrays[name]) for name in self.columns})
        table = table.replace_schema_metadata({"ferkit.source": self.source, "ferkit.fps": str(self.fps),
                                               "ferkit.frames": str(self.frames)})
        path = Path(path)
        with atomic_write(path) as f:
            pq.write_table(table, f)
        return path

    def _column_arrays(self) -> dict[str, Any]:
        d = self.data()
        labels = np.array(list(self.labels) + [None], dtype=object)  # index -1: None
        out: dict[str, Any] = {"frame": d["frame"], "time_s": d["time_s"], "track_id": d["track_id"],
                               "x": d["box"][:, 0], "y": d["box"][:, 1], "w": d["box"][:, 2], "h": d["box"][:, 3],
                               "det_score": d["det_score"], "emotion": labels[d["emotion"]]}
        for k, label in enumerate(self.labels):
            out[f"p_{label}"] = d["probs"][:, k]
        out["emotion_smooth"] = labels[d["emotion_smooth"]]
        for k, label in enumerate(self.labels):
            out[f"p_smooth_{label}"] = d["probs_smooth"][:, k]
        return out

    # -- summary and plot --------------------------------------------------------------------------------------

    def summary(self) -> list[TrackSummary]:
        """One TrackSummary per track, by track id (empty when the video had no faces)."""
        d = self.data()
        out = []
        for tid in self.tracks:
            rows = d["track_id"] == tid
            times = d["time_s"][rows]
            smoothed = d["emotion_smooth"][rows]
            classified = smoothed >= 0
            n = int(classified.sum())
            counts = np.bincount(smoothed[classified], minlength=len(self.labels)) if n else np.zeros(len(self.labels))
            share = {label: float(counts[k] / n) if n else 0.0 for k, label in enumerate(self.labels)}
            probs = d["probs"][rows][d["emotion"][rows] >= 0]
            mean = probs.mean(0) if len(probs) else np.full(len(self.labels), np.nan)
            first, last = float(times.min()), float(times.max())
            out.append(TrackSummary(int(tid), first, last, last - first + 1.0 / self.fps, int(rows.sum()),
                                    self.labels[int(np.argmax(counts))] if n else None, share,
                                    {label: float(mean[k]) for k, label in enumerate(self.labels)}))
        return out

    def plot(self, path: str | Path, *, max_tracks: int = 6) -> Path:
        """A PNG of each track's smoothed probabilities over time, with an emotion ribbon (needs matplotlib)."""
        from ferkit import deps

        deps.require("matplotlib", for_what="the timeline plot")
        from ferkit.plots.video import plot_timeline

        return plot_timeline(self, path, max_tracks=max_tracks)


def write_summary(summaries: Sequence[TrackSummary], path: str | Path, labels: Sequence[str]) -> Path:
    """The per-track summary as JSON (a list of objects; ``.json``) or CSV (any other suffix)."""
    path = Path(path)
    with atomic_write(path, "w") as f:
        if path.suffix.lower() == ".json":
            _json.dump([s.to_dict() for s in summaries], f, indent=1)
            f.write("\n")
        else:
            writer = _csv.writer(f)
            writer.writerow(summary_columns(labels))
            for s in summaries:
                writer.writerow([_csv_cell(v) for v in s.row(labels)])
    return path


def check_outputs(*, csv=None, json=None, parquet=None, summary=None, plot=None) -> None:
    """Refuse outputs that would fail only at the end of a long run: an unwritable folder, a missing optional
    package, a summary or plot format that is not supported."""
    from ferkit import deps

    for flag, path in (("--csv", csv), ("--json", json), ("--parquet", parquet), ("--summary", summary),
                       ("--plot", plot)):
        if path is not None:
            check_writable(path, flag)
    if summary is not None and Path(summary).suffix.lower() not in (".csv", ".json"):
        raise FerkitError(f"--summary {summary}: give a .csv or .json file")
    if plot is not None and Path(plot).suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise FerkitError(f"--plot {plot}: give a .png (or .pdf, .svg, .jpg) file")
    if parquet is not None:
        deps.require("pyarrow", for_what="--parquet")
    if plot is not None:
        deps.require("matplotlib", for_what="--plot")


def _new_chunk(k: int, n: int = _CHUNK) -> dict[str, np.ndarray]:
    return {"frame": np.empty(n, np.int64), "time_s": np.empty(n, np.float64), "track_id": np.empty(n, np.int32),
            "box": np.empty((n, 4), np.int32), "det_score": np.empty(n, np.float32),
            "emotion": np.empty(n, np.int8), "probs": np.empty((n, k), np.float32),
            "emotion_smooth": np.empty(n, np.int8), "probs_smooth": np.empty((n, k), np.float32)}


def _round(v: float, digits: int) -> float | None:
    return None if math.isnan(v) else round(v, digits)


def _csv_cell(v: Any) -> Any:
    return "" if v is None else v
