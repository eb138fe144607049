"""The pipeline: batched inference, detection every N frames, live sources that drop frames instead of falling
behind, and outputs that stay valid when a run is interrupted or its stream drops."""
from __future__ import annotations

import csv
import json
import math
import time

import numpy as np
import pytest

from ferkit import Recognizer
from ferkit.video import analyze
from ferkit.video.sources import CaptureSource, VideoError
from video_clips import (FakeCamera, FixedClassifier, SquareDetector, face_frames, square_frames, video_info,
                         write_clip)


def recognizer(detector=None, classifier=None) -> Recognizer:
    return Recognizer(model=classifier or FixedClassifier(), detector=detector or SquareDetector(), min_face=10)


def three_squares(i: int):
    """Three faces per frame, drifting right by 2 px a frame; the third is dark (the classifier says sad)."""
    return [(10 + 2 * i, 20, 30), (80 + 2 * i, 20, 30), (150, 90, 40)]


@pytest.fixture
def clip(tmp_path):
    return write_clip(tmp_path / "squares.avi", square_frames(12, three_squares), fps=10)


def live(frames, fps=100.0, **kwargs) -> CaptureSource:
    return CaptureSource(FakeCamera(frames, fps, **kwargs), name="fake camera", live=True)


def test_all_faces_of_a_batch_of_frames_are_classified_in_one_forward_pass(clip):
    clf = FixedClassifier()
    frames = list(recognizer(classifier=clf).stream(clip, batch_frames=4))
    assert [f.index for f in frames] == list(range(12))
    assert clf.calls == [12, 12, 12]  # 3 faces x 4 frames per call
    assert all(len(f.faces) == 3 for f in frames[:-1])


def test_stream_yields_frames_with_times_and_track_ids(clip):
    frames = list(recognizer().stream(clip))
    assert [f.time_s for f in frames] == pytest.approx([i / 10 for i in range(12)])
    for f in frames:
        assert [face.track_id for face in f.faces] == [1, 2, 3] and f.detected and f.dropped == 0
        assert f.image.shape == (150, 200, 3)
    assert frames[5].faces[0].box == (20, 20, 30, 30)
    assert [face.emotion for face in frames[0].faces] == ["happy", "happy", "happy"]


def test_detect_every_n_runs_the_detector_on_every_nth_frame_and_carries_boxes_between(clip):
    det = SquareDetector()
    frames = list(recognizer(detector=det).stream(clip, detect_every=3))
    assert det.calls == 4 and [f.detected for f in frames[:4]] == [True, False, False, True]
    carried = frames[4].faces[0]
    assert math.isnan(carried.score) and carried.track_id == 1
    # The boxes keep moving between detections (2 px a frame), within a pixel of where the squares are.
    assert abs(carried.box[0] - (10 + 2 * 4)) <= 1 and carried.emotion == "happy"


def test_max_faces_keeps_the_largest(clip):
    frames = list(recognizer().stream(clip, max_faces=1))
    assert all([face.box[2] for face in f.faces] == [40] for f in frames)


def test_smoothing_averages_each_track_and_no_smooth_gives_the_raw_values(tmp_path):
    # One face whose square turns from white (happy) to gray (sad) at frame 3.
    frames = square_frames(6, lambda i: [(50, 50, 30)])
    for f in frames[3:]:
        f[50:80, 50:80] = 210  # still found by the detector, "sad" to the classifier below
    path = write_clip(tmp_path / "turn.avi", frames, fps=30)  # at 30 frames/s the weight per frame is --smooth

    class Threshold(FixedClassifier):
        def predict_proba(self, faces):
            self.calls.append(len(faces))
            p = np.full((len(faces), 7), 0.05, np.float32)
            bright = faces.reshape(len(faces), -1).mean(1) > 220
            p[bright, 3], p[~bright, 5] = 0.7, 0.7
            return p

    smoothed = [f.faces[0] for f in recognizer(classifier=Threshold()).stream(path, smooth=0.3)]
    assert [f.emotion for f in smoothed] == ["happy"] * 3 + ["sad"] * 3
    assert [f.emotion_smooth for f in smoothed] == ["happy"] * 4 + ["sad"] * 2  # a frame of lag
    assert smoothed[3].probs_smooth["sad"] == pytest.approx(0.3 * 0.7 + 0.7 * 0.05)
    raw = [f.faces[0] for f in recognizer(classifier=Threshold()).stream(path, smooth=None)]
    assert all(f.probs_smooth == f.probs and f.emotion_smooth == f.emotion for f in raw)


def test_a_slow_consumer_of_a_live_source_drops_frames_and_never_falls_behind():
    frames = square_frames(60, lambda i: [(20 + i, 30, 30)])
    camera = live(frames, fps=100)  # 0.6 s of video
    start = time.monotonic()
    seen, lags = [], []
    with recognizer().stream(camera) as stream:
        for f in stream:
            lags.append(time.monotonic() - start - f.time_s)
            seen.append(f)
            time.sleep(0.04)  # a consumer at 25 frames/s
    indices = [f.index for f in seen]
    assert indices == sorted(set(indices)) and indices[-1] == 59  # in order, up to the newest frame
    assert seen[-1].dropped == 60 - len(seen) > 20
    # Without dropping, the last frame would be seen about 60 * 0.04 - 0.6 = 1.8 s late.
    assert max(lags) < 0.5, lags
    assert camera.capture.released


def test_a_file_never_drops_frames_however_slow_the_consumer(clip):
    seen = []
    for f in recognizer().stream(clip, batch_frames=2):
        time.sleep(0.01)
        seen.append(f.index)
    assert seen == list(range(12))


def test_ctrl_c_finishes_every_output(tmp_path):
    frames = square_frames(200, lambda i: [(20 + i // 4, 30, 30)])
    out = {k: tmp_path / f"run.{k}" for k in ("csv", "json")}

    processed = []

    def interrupt_at_ten(frame):
        processed.append(frame.index)
        if len(processed) == 10:
            raise KeyboardInterrupt

    try:
        timeline = analyze(live(frames, fps=200), recognizer(), out=tmp_path / "run.mp4", csv=out["csv"],
                           json=out["json"], summary=tmp_path / "summary.json", plot=tmp_path / "plot.png",
                           on_frame=interrupt_at_ten)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped analyze instead of ending the run")
    assert timeline.interrupted and timeline.stopped_by == "interrupt"
    n = timeline.frames
    assert n == 10 and len(timeline) == n
    with open(out["csv"], newline="") as f:
        assert len(list(csv.reader(f))) == 1 + n
    data = json.loads(out["json"].read_text())
    assert data["interrupted"] is True and len(data["rows"]) == n
    assert json.loads((tmp_path / "summary.json").read_text())[0]["frames"] == n
    assert video_info(tmp_path / "run.mp4") == (n, 200, 150)  # finalised: it opens and plays every frame
    assert (tmp_path / "plot.png").is_file()


def test_a_stream_that_drops_midway_keeps_its_outputs(tmp_path, caplog):
    frames = square_frames(40, lambda i: [(20 + i, 30, 30)])
    for camera in (live(frames, fail_after=15), live(frames, raise_after=15)):
        csv_path = tmp_path / "t.csv"
        timeline = analyze(camera, recognizer(), csv=csv_path, out=tmp_path / "t.mp4")
        assert timeline.frames + timeline.dropped == 15 and not timeline.interrupted
        assert len(csv_path.read_text().splitlines()) == 1 + timeline.frames
        assert video_info(tmp_path / "t.mp4")[0] == timeline.frames
    assert "connection reset by peer" in caplog.text  # the failing read is reported, not raised


def test_a_file_that_fails_midway_raises_after_writing_what_it_has(tmp_path):
    source = CaptureSource(FakeCamera(square_frames(10, lambda i: [(20, 30, 30)]), fps=1e6, raise_after=4),
                           name="broken.mp4", live=False)
    with pytest.raises(VideoError, match="reading broken.mp4 failed after 4 frames"):
        analyze(source, recognizer(), json=tmp_path / "t.json")
    assert len(json.loads((tmp_path / "t.json").read_text())["rows"]) == 4


def test_no_faces_is_an_empty_timeline_not_an_error(tmp_path):
    path = write_clip(tmp_path / "empty.avi", square_frames(5, lambda i: []))
    timeline = analyze(path, recognizer(), summary=tmp_path / "s.json", out=tmp_path / "o.avi")
    assert timeline.frames == 5 and len(timeline) == 0 and timeline.summary() == []
    assert json.loads((tmp_path / "s.json").read_text()) == []
    assert video_info(tmp_path / "o.avi") == (5, 200, 150)


def test_bad_options_are_refused_before_reading(clip):
    rec = recognizer()
    for kwargs in ({"detect_every": 0}, {"batch_frames": 0}, {"max_faces": 0}, {"smooth": 0.0}, {"smooth": 2.0},
                   {"track_gap_s": 0}, {"max_frames": 0}):
        with pytest.raises(VideoError):
            rec.stream(clip, **kwargs)


def test_max_frames_stops_early(clip):
    assert [f.index for f in recognizer().stream(clip, max_frames=5)] == [0, 1, 2, 3, 4]


def test_q_in_the_window_stops_the_run_and_keeps_the_outputs(monkeypatch, clip, tmp_path):
    import cv2

    shown = []
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(cv2, "namedWindow", lambda *a: None)
    monkeypatch.setattr(cv2, "imshow", lambda title, image: shown.append(image.copy()))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 3 else -1)
    monkeypatch.setattr(cv2, "getWindowProperty", lambda *a: 1.0)
    monkeypatch.setattr(cv2, "destroyWindow", lambda *a: None)
    timeline = analyze(clip, recognizer(), show=True, out=tmp_path / "o.avi")
    assert timeline.stopped_by == "window" and timeline.frames == 3 and not timeline.interrupted
    assert len(shown) == 3 and shown[0].shape == (150, 200, 3) and (shown[0] != 0).any()
    assert video_info(tmp_path / "o.avi")[0] == 3  # the frame shown when q was pressed is in the video too


def test_without_a_display_or_a_gui_build_the_run_is_headless(monkeypatch, clip):
    import cv2

    from ferkit.video.writers import Window

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert Window.open("x") is None
    monkeypatch.setenv("DISPLAY", ":0")

    def no_gui(*args):
        raise cv2.error("The function is not implemented")

    monkeypatch.setattr(cv2, "namedWindow", no_gui)
    assert Window.open("x") is None
    assert analyze(clip, recognizer(), show=True).frames == 12


def test_the_video_path_runs_without_pytorch(tmp_path):
    """The shipped model on ONNX Runtime; PyTorch made unimportable. Its TTA is the one video picks, with the
    views cut on the host where the shipped graph has none inside, else the model's own (another would need
    an export, which needs PyTorch)."""
    import subprocess
    import sys

    clip = write_clip(tmp_path / "c.avi", face_frames(3))
    code = f"""
import sys
sys.modules["torch"] = None  # import torch now fails, and find_spec says it is not there
from ferkit.video import analyze, video_recognizer
rec = video_recognizer(detector="haar")
timeline = analyze({str(clip)!r}, rec)
print(rec.classifier.tta, timeline.frames, len(timeline), sys.modules["torch"] is None)
"""
    env = {**__import__("os").environ, "FERKIT_CACHE_DIR": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    from ferkit.inference.onnx_backend import OnnxClassifier
    from ferkit.paths import WEIGHTS_DIR
    from ferkit.video import pipeline

    graph = OnnxClassifier(WEIGHTS_DIR / "default.onnx", device="cpu")
    expected = graph.tta if graph.graph_tta != "none" or pipeline.VIEWS[graph.tta] <= 2 else pipeline.VIDEO_TTA
    assert done.stdout.split() == [expected, "3", "3", "True"]


def test_video_recognizer_picks_the_cheaper_tta_only_where_it_needs_no_missing_package(monkeypatch, tmp_path):
    from ferkit import deps
    from ferkit.video import pipeline

    assert pipeline._tta_facts("default", "auto", "cpu")[1]  # PyTorch here: exported once
    assert not pipeline._tta_facts(tmp_path / "model.onnx", "auto", "cpu")[1]  # TTA fixed in the file
    assert not pipeline._tta_facts(FixedClassifier(), "auto", "cpu")[1]
    monkeypatch.setattr(deps, "available", lambda name: name != "torch")
    from ferkit.inference.onnx_backend import OnnxClassifier
    from ferkit.paths import WEIGHTS_DIR

    # Without PyTorch, only a shipped graph without TTA inside can run another TTA (on the host).
    bare = OnnxClassifier(WEIGHTS_DIR / "default.onnx", device="cpu").graph_tta == "none"
    assert pipeline._tta_facts("default", "auto", "cpu")[1] == bare
    assert pipeline._tta_facts("fast", "auto", "cpu")[1]  # shipped without TTA inside: host views
    (tmp_path / "cache" / "onnx").mkdir(parents=True)
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / "onnx" / "default-0123456789abcdef-tta_none.onnx").write_bytes(b"")
    assert pipeline._tta_facts("default", "auto", "cpu")[1]  # an earlier export is in the cache


def test_video_keeps_a_model_tta_that_is_no_dearer_than_the_video_tta():
    from ferkit.video import pipeline, video_recognizer

    assert pipeline._tta_facts("fast", "auto", "cpu")[0] == "none"
    assert video_recognizer("fast", detector=SquareDetector()).classifier.tta == "none"  # not raised to flip
    own = pipeline._tta_facts("default", "auto", "cpu")[0]
    expected = own if pipeline.VIEWS[own] <= pipeline.VIEWS[pipeline.VIDEO_TTA] else pipeline.VIDEO_TTA
    assert video_recognizer("default", detector=SquareDetector()).classifier.tta == expected


def test_opencv_threads_are_restored_after_a_run(clip):
    import cv2

    before = cv2.getNumThreads()
    analyze(clip, recognizer(), max_frames=3)
    assert cv2.getNumThreads() == before


def test_a_carried_box_that_left_the_frame_does_not_shift_the_other_faces_probabilities(clip):
    from ferkit.inference.detectors import Detection
    from ferkit.video.sources import Frame

    stream = recognizer().stream(clip)
    image = np.zeros((150, 200, 3), np.uint8)
    image[20:50, 80:110] = 255  # one bright face in the frame: the classifier says happy
    # The tracker carries two boxes: one that moved past the right edge (dark when cropped), then the bright one.
    stream.tracker.predict = lambda index: [(1, Detection((300.0, 20.0, 30.0, 30.0), 0.9)),
                                            (2, Detection((80.0, 20.0, 30.0, 30.0), 0.9))]
    (frame,) = stream._process([(Frame(0, 0.0, image), None)])
    assert [f.track_id for f in frame.faces] == [2]  # the box outside the frame is not reported
    assert frame.faces[0].emotion == "happy"
    stream.close()


def test_an_exported_onnx_file_gets_the_video_tta_only_where_its_graph_has_no_views_inside(tmp_path):
    """An adaptive export is the bare network (its views are cut on the host), so video can run flip on it; a
    graph with flip_shift inside can run nothing else."""
    from ferkit.inference.export import export_onnx
    from ferkit.video import pipeline, video_recognizer
    from synthetic import seeded_checkpoint

    ckpt = seeded_checkpoint(tmp_path / "net.pt", arch="fernet_s", input_size=24, tta="adaptive")
    bare = export_onnx(ckpt, tmp_path / "bare.onnx")
    inside = export_onnx(ckpt, tmp_path / "inside.onnx", tta="flip_shift")
    assert pipeline._tta_facts(bare, "auto", "cpu")[0] == "adaptive"
    assert pipeline._tta_facts(bare, "auto", "cpu")[1]
    assert not pipeline._tta_facts(inside, "auto", "cpu")[1]
    assert video_recognizer(bare, detector=SquareDetector()).classifier.tta == pipeline.VIDEO_TTA
    assert video_recognizer(inside, detector=SquareDetector()).classifier.tta == "flip_shift"


def test_video_recognizer_reads_an_onnx_files_metadata_once(monkeypatch):
    from ferkit.paths import WEIGHTS_DIR
    from ferkit.video import pipeline, video_recognizer

    reads = []
    real = pipeline._onnx_metadata
    monkeypatch.setattr(pipeline, "_onnx_metadata", lambda path: reads.append(path) or real(path))
    rec = video_recognizer(str(WEIGHTS_DIR / "default.onnx"), detector=SquareDetector(), threads=None)
    assert [str(p) for p in reads] == [str(WEIGHTS_DIR / "default.onnx")]
    assert rec.classifier.tta == pipeline.VIDEO_TTA  # adaptive on the host is dearer than flip
