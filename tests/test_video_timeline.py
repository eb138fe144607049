"""The timeline: its exact columns in every format, empty cells where there is nothing to say, and the per-track
summary."""
from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from ferkit import deps
from ferkit.labels import EMOTIONS
from ferkit.video.pipeline import TrackedFace, VideoFrame
from ferkit.video.timeline import Timeline, check_outputs, summary_columns, timeline_columns, write_summary

COLUMNS = (["frame", "time_s", "track_id", "x", "y", "w", "h", "det_score", "emotion"]
           + [f"p_{e}" for e in EMOTIONS] + ["emotion_smooth"] + [f"p_smooth_{e}" for e in EMOTIONS])


def probs(top: str, p: float = 0.7) -> dict[str, float]:
    return {e: (p if e == top else (1 - p) / 6) for e in EMOTIONS}


def face(tid: int, emotion: str | None, smooth: str | None = None, score: float = 0.9,
         box=(10, 20, 30, 40)) -> TrackedFace:
    if emotion is None:
        return TrackedFace(tid, box, score, None, None, {}, None, {})
    smooth = smooth or emotion
    return TrackedFace(tid, box, score, None, emotion, probs(emotion), smooth, probs(smooth, 0.6))


def frame(index: int, *faces: TrackedFace, fps: float = 10.0) -> VideoFrame:
    return VideoFrame(index, index / fps, list(faces), detected=True)


@pytest.fixture
def timeline() -> Timeline:
    """Track 1 in frames 0-4 (happy, happy, sad, happy, happy smoothed: happy throughout but frame 2),
    track 2 in frames 2-3 (too small in frame 3), frame 5 without faces."""
    t = Timeline(EMOTIONS, fps=10.0, source="clip.mp4")
    t.add(frame(0, face(1, "happy")))
    t.add(frame(1, face(1, "happy")))
    t.add(frame(2, face(1, "sad", smooth="sad"), face(2, "fear", score=float("nan"))))
    t.add(frame(3, face(1, "happy"), face(2, None)))
    t.add(frame(4, face(1, "happy")))
    t.add(frame(5))
    return t


def test_the_columns_are_exactly_the_documented_ones():
    assert timeline_columns(EMOTIONS) == COLUMNS
    assert Timeline(EMOTIONS, fps=30).columns == COLUMNS


def test_one_row_per_face_per_frame_and_frames_without_faces_still_count(timeline):
    assert len(timeline) == 7 and timeline.frames == 6 and timeline.tracks == [1, 2]
    rows = list(timeline.rows())
    assert [(r["frame"], r["track_id"]) for r in rows] == [(0, 1), (1, 1), (2, 1), (2, 2), (3, 1), (3, 2), (4, 1)]
    first = rows[0]
    assert first["time_s"] == 0.0 and (first["x"], first["y"], first["w"], first["h"]) == (10, 20, 30, 40)
    assert first["emotion"] == "happy" and first["p_happy"] == pytest.approx(0.7)
    assert first["emotion_smooth"] == "happy" and first["p_smooth_happy"] == pytest.approx(0.6)
    assert rows[3]["det_score"] is None  # a box the tracker carried
    small = rows[5]
    assert small["emotion"] is None and small["emotion_smooth"] is None
    assert all(small[f"p_{e}"] is None and small[f"p_smooth_{e}"] is None for e in EMOTIONS)


def test_csv_has_the_columns_and_empty_cells_for_missing_values(timeline, tmp_path):
    path = timeline.to_csv(tmp_path / "t.csv")
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == COLUMNS and len(rows) == 1 + 7
    record = dict(zip(COLUMNS, rows[4]))  # frame 2, track 2
    assert record["det_score"] == "" and record["emotion"] == "fear" and float(record["p_fear"]) == pytest.approx(0.7)
    assert dict(zip(COLUMNS, rows[6]))["emotion"] == ""


def test_streamed_csv_equals_the_csv_written_at_the_end(tmp_path):
    streamed = Timeline(EMOTIONS, fps=10.0)
    streamed.stream_csv(tmp_path / "streamed.csv")
    streamed.add(frame(0, face(1, "happy")))
    # Readable mid-run: the header and every row so far are on disk.
    assert (tmp_path / "streamed.csv").read_text().count("\n") == 2
    streamed.add(frame(1, face(1, "sad"), face(2, None)))
    streamed.close()
    assert (tmp_path / "streamed.csv").read_text() == streamed.to_csv(tmp_path / "end.csv").read_text()


def test_streaming_a_frame_costs_the_same_however_long_the_timeline(tmp_path, monkeypatch):
    t = Timeline(EMOTIONS, fps=30)
    t.stream_csv(tmp_path / "t.csv")
    for i in range(5000):
        t.add(frame(i, face(1, "happy")))
    # Each frame's rows come from its own storage chunk: nothing re-reads (concatenates) the rows before it.
    monkeypatch.setattr(Timeline, "data", lambda self: pytest.fail("the whole timeline was read to add a frame"))
    t.add(frame(5000, face(1, "sad")))
    t.close()
    assert (tmp_path / "t.csv").read_text().splitlines()[-1].startswith("5000,500.0,1,10,20,30,40,0.9,sad,")


def test_json_holds_the_run_and_one_object_per_row(timeline, tmp_path):
    timeline.dropped, timeline.interrupted = 3, True
    data = json.loads(timeline.to_json(tmp_path / "t.json").read_text())
    assert data["columns"] == COLUMNS and data["labels"] == list(EMOTIONS)
    assert (data["frames"], data["dropped"], data["interrupted"], data["source"]) == (6, 3, True, "clip.mp4")
    assert data["rows"] == list(timeline.rows()) and list(data["rows"][0]) == COLUMNS


def test_summary_per_track(timeline):
    one, two = timeline.summary()
    assert (one.track_id, one.first_s, one.last_s, one.frames) == (1, 0.0, 0.4, 5)
    assert one.duration_s == pytest.approx(0.5)  # first to last, plus one frame
    assert one.dominant == "happy"
    assert one.share["happy"] == pytest.approx(0.8) and one.share["sad"] == pytest.approx(0.2)
    assert sum(one.share.values()) == pytest.approx(1.0)
    # Mean raw probabilities: four frames at 0.7 happy, one at 0.05.
    assert one.mean_probs["happy"] == pytest.approx((4 * 0.7 + 0.3 / 6) / 5)
    # Track 2: two rows, one classified (fear), one too small (left out of shares and means).
    assert (two.frames, two.dominant, two.share["fear"]) == (2, "fear", 1.0)
    assert two.mean_probs["fear"] == pytest.approx(0.7)


def test_a_track_never_classified_has_no_dominant_emotion():
    t = Timeline(EMOTIONS, fps=25)
    t.add(frame(0, face(7, None)))
    (s,) = t.summary()
    assert s.dominant is None and set(s.share.values()) == {0.0} and all(math.isnan(v) for v in s.mean_probs.values())
    assert s.to_dict()["mean_probs"]["happy"] is None


def test_summary_files_in_csv_and_json(timeline, tmp_path):
    write_summary(timeline.summary(), tmp_path / "s.csv", EMOTIONS)
    with open(tmp_path / "s.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == summary_columns(EMOTIONS)
    assert [r["track_id"] for r in rows] == ["1", "2"] and rows[0]["dominant"] == "happy"
    assert float(rows[0]["share_happy"]) == pytest.approx(0.8)
    write_summary(timeline.summary(), tmp_path / "s.json", EMOTIONS)
    data = json.loads((tmp_path / "s.json").read_text())
    assert data[0]["track_id"] == 1 and data[0]["share"]["happy"] == pytest.approx(0.8)
    assert set(data[0]) == {"track_id", "first_s", "last_s", "duration_s", "frames", "dominant", "share", "mean_probs"}


def test_an_empty_timeline_gives_empty_but_valid_outputs(tmp_path):
    t = Timeline(EMOTIONS, fps=30)
    t.add(frame(0))
    assert len(t) == 0 and t.summary() == [] and t.tracks == []
    assert (t.to_csv(tmp_path / "t.csv").read_text().strip().split(",")) == COLUMNS
    assert json.loads(t.to_json(tmp_path / "t.json").read_text())["rows"] == []
    write_summary([], tmp_path / "s.csv", EMOTIONS)
    assert (tmp_path / "s.csv").read_text().strip().split(",") == summary_columns(EMOTIONS)
    write_summary([], tmp_path / "s.json", EMOTIONS)
    assert json.loads((tmp_path / "s.json").read_text()) == []
    t.plot(tmp_path / "empty.png")
    assert (tmp_path / "empty.png").read_bytes()[:4] == b"\x89PNG"


def test_rows_spanning_storage_chunks_stay_in_order():
    t = Timeline(EMOTIONS, fps=30)
    for i in range(5000):  # more than one chunk of 4096 rows
        t.add(frame(i, face(1 + i % 2, "happy")))
    d = t.data()
    assert len(t) == 5000 and np.array_equal(d["frame"], np.arange(5000))
    assert t.summary()[0].frames == 2500


def test_the_plot_draws_every_track(timeline, tmp_path):
    path = timeline.plot(tmp_path / "timeline.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_pandas_when_installed_else_a_clear_error(timeline):
    if deps.available("pandas"):
        df = timeline.to_pandas()
        assert list(df.columns) == COLUMNS and len(df) == 7 and df["emotion"].iloc[5] is None
    else:
        with pytest.raises(deps.MissingDependency, match="pip install pandas"):
            timeline.to_pandas()


def test_parquet_when_pyarrow_is_installed_else_a_clear_error(timeline, tmp_path):
    if deps.available("pyarrow"):
        import pyarrow.parquet as pq

        table = pq.read_table(timeline.to_parquet(tmp_path / "t.parquet"))
        assert table.column_names == COLUMNS and table.num_rows == 7
    else:
        with pytest.raises(deps.MissingDependency, match="pip install pyarrow"):
            timeline.to_parquet(tmp_path / "t.parquet")
        with pytest.raises(deps.MissingDependency, match="pyarrow"):
            check_outputs(parquet=tmp_path / "t.parquet")  # refused before the run, not after it


def test_output_formats_are_checked_before_the_run(tmp_path):
    with pytest.raises(Exception, match="--summary .*csv or .json"):
        check_outputs(summary=tmp_path / "s.txt")
    with pytest.raises(Exception, match="--plot .*png"):
        check_outputs(plot=tmp_path / "p.gif")
