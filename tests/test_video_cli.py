"""`ferkit video` end to end on clips generated from the bundled photo (Haar finds its face), and every kind of
bad input as one error line."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import ferkit.cli as cli
from ferkit.labels import EMOTIONS
from video_clips import (blank_frames, crossing_frames, face_frames, shared_cache, video_cache,  # noqa: F401
                         video_info, write_clip)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["video", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("clips") / "face.avi", face_frames(12))


def test_annotated_video_timeline_summary_and_plot(capsys, tmp_path, clip, shared_cache):
    out, table, summary, plot = (tmp_path / n for n in ("annotated.mp4", "t.csv", "s.json", "p.png"))
    code, stdout, stderr = run(capsys, str(clip), "--detector", "haar", "--out", str(out), "--csv", str(table),
                               "--summary", str(summary), "--plot", str(plot))
    assert code == 0, stderr
    assert video_info(out) == (12, 320, 240)  # every frame, at the source's size
    rows = read_csv(table)
    assert [int(r["frame"]) for r in rows] == list(range(12)) and {r["track_id"] for r in rows} == {"1"}
    assert all(r["emotion"] in EMOTIONS and r["emotion_smooth"] in EMOTIONS for r in rows)
    assert sum(float(rows[0][f"p_{e}"]) for e in EMOTIONS) == pytest.approx(1.0, abs=1e-4)
    (track,) = json.loads(summary.read_text())
    assert track["frames"] == 12 and track["first_s"] == 0.0 and track["last_s"] == pytest.approx(1.1)
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert stdout.startswith("track 1: 0.00-1.10 s (12 frames): mostly ")
    assert "12 frames in" in stderr and "0 dropped; 1 track, 12 face rows" in stderr and "tta=flip" in stderr


def test_two_faces_that_cross_paths_keep_both_ids(capsys, tmp_path, shared_cache):
    clip = write_clip(tmp_path / "cross.avi", crossing_frames(20))
    code, _, err = run(capsys, str(clip), "--detector", "haar", "--json", str(tmp_path / "t.json"))
    assert code == 0, err
    rows = json.loads((tmp_path / "t.json").read_text())["rows"]
    front = [r for r in rows if r["y"] < 60]  # A, walking right in front
    behind = [r for r in rows if r["y"] > 80]  # B, walking left, hidden while A passes
    assert len(front) == 20 and len(behind) >= 12
    assert {r["track_id"] for r in front} == {1} and {r["track_id"] for r in behind} == {2}
    assert front[-1]["x"] > front[0]["x"] and behind[-1]["x"] < behind[0]["x"]


def test_detect_every_leaves_det_score_empty_where_the_tracker_carried_the_box(capsys, tmp_path, clip,
                                                                            shared_cache):
    code, _, err = run(capsys, str(clip), "--detector", "haar", "--detect-every", "3", "--no-smooth",
                       "--csv", str(tmp_path / "t.csv"))
    assert code == 0, err
    rows = read_csv(tmp_path / "t.csv")
    assert len(rows) == 12 and [r["det_score"] != "" for r in rows[:4]] == [True, False, False, True]
    assert all(r["emotion"] == r["emotion_smooth"] for r in rows)


def test_a_video_without_faces_gives_empty_outputs_and_exit_status_0(capsys, tmp_path, shared_cache):
    clip = write_clip(tmp_path / "sky.avi", blank_frames(6))
    code, stdout, err = run(capsys, str(clip), "--detector", "haar", "--csv", str(tmp_path / "t.csv"),
                            "--summary", str(tmp_path / "s.csv"))
    assert code == 0, err
    assert read_csv(tmp_path / "t.csv") == [] and read_csv(tmp_path / "s.csv") == []
    assert (tmp_path / "t.csv").read_text().startswith("frame,time_s,track_id,")
    assert stdout == "" and "6 frames in" in err and "0 tracks, 0 face rows" in err


def _undecodable(path: Path) -> Path:
    """An AVI whose codec FourCC says 'QZX1', which no decoder knows."""
    write_clip(path, blank_frames(3))
    path.write_bytes(path.read_bytes().replace(b"MJPG", b"QZX1"))
    return path


def _zero_frames(path: Path) -> Path:
    cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48)).release()
    return path


@pytest.mark.parametrize("make, extra, words", [
    (lambda d: d / "missing.mp4", [], "no such file"),
    (lambda d: (d / "notes.mp4").write_text("not a video") and d / "notes.mp4", [], "not a video file"),
    (lambda d: _undecodable(d / "odd.avi"), [], "'QZX1'"),
    (lambda d: _zero_frames(d / "zero.avi"), [], "has no video frames"),
    (lambda d: write_clip(d / "big.avi", blank_frames(2, (320, 240))), ["--max-frame-side", "200"],
     "frames are 320x240, larger than the limit of 200"),
    (lambda d: None, ["--camera", "97"], "cannot open camera 97"),
    (lambda d: "http://127.0.0.1:9/none.mp4", [], "cannot open stream http://127.0.0.1:9/none.mp4"),  # port 9: closed
    (lambda d: write_clip(d / "ok.avi", blank_frames(2)), ["--camera", "0"], "not both"),
    (lambda d: write_clip(d / "ok.avi", blank_frames(2)), ["--summary", "{tmp}/s.txt"], ".csv or .json"),
    (lambda d: write_clip(d / "ok.avi", blank_frames(2)), ["--out", "{tmp}/o.gif"], ".mp4, .m4v"),
    (lambda d: write_clip(d / "ok.avi", blank_frames(2)), ["--detect-every", "0"], "at least 1"),
])
def test_bad_input_is_one_error_line(capsys, tmp_path, make, extra, words):
    source = make(tmp_path)
    extra = [a.format(tmp=tmp_path) for a in extra]
    code, out, err = run(capsys, *([str(source)] if source else []), *extra, "--detector", "haar")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ferkit video: error: ") and words in lines[0], err


def test_an_undecodable_file_gets_the_ffmpeg_line_that_converts_it(capsys, tmp_path):
    _, _, err = run(capsys, str(_undecodable(tmp_path / "odd.avi")))
    assert "ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4" in err


def test_a_folder_of_frames_is_a_video(capsys, tmp_path, shared_cache):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(face_frames(12)[5:10]):
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), frame)
    (folder / "notes.txt").write_text("ignored")
    code, _, err = run(capsys, str(folder), "--detector", "haar", "--fps", "5", "--csv", str(tmp_path / "t.csv"),
                       "--out", str(tmp_path / "o.avi"))
    assert code == 0, err
    rows = read_csv(tmp_path / "t.csv")
    assert [float(r["time_s"]) for r in rows] == [0.0, 0.2, 0.4, 0.6, 0.8]
    assert video_info(tmp_path / "o.avi") == (5, 320, 240)


def test_overlay_frames_show_the_track_and_stay_the_source_size(tmp_path, shared_cache):
    from ferkit.video import analyze, video_recognizer

    clip = write_clip(tmp_path / "face.avi", face_frames(4))
    analyze(clip, video_recognizer(detector="haar"), out=tmp_path / "o.mp4")
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    ok, annotated = cap.read()
    original = face_frames(1)[0]
    assert ok and annotated.shape == original.shape
    assert np.abs(annotated.astype(int) - original).max() > 100  # the overlay is there
