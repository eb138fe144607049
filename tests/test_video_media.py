"""The video pipeline on real clips (../shared/media/video, YuNet): a row for every frame with a face, one track id
per person, an annotated video with every frame."""
from __future__ import annotations

from collections import Counter

import pytest

from ferkit.video import analyze, video_recognizer
from video_clips import shared_cache, video_cache, video_info  # noqa: F401

pytestmark = pytest.mark.integration


@pytest.fixture
def rec(yunet_model, shared_cache):
    return video_recognizer(detector="yunet", detector_model=yunet_model)


def share_of_main_track(timeline) -> float:
    counts = Counter(timeline.data()["track_id"].tolist())
    return max(counts.values()) / len(timeline)


def test_single_face_clip_has_a_row_for_every_frame_one_track_and_a_complete_annotated_video(rec, media_dir,
                                                                                            tmp_path):
    clip = media_dir / "video" / "pyfeat_single_face.mp4"  # 72 frames, one face in each
    timeline = analyze(clip, rec, out=tmp_path / "annotated.mp4")
    assert timeline.frames == 72
    assert sorted(timeline.data()["frame"].tolist()) == list(range(72))  # exactly one face row per frame
    assert share_of_main_track(timeline) >= 0.95
    assert video_info(tmp_path / "annotated.mp4") == (72, 640, 360)


def test_a_person_changing_expression_keeps_one_track(rec, media_dir):
    timeline = analyze(media_dir / "video" / "fer_woman2.mp4", rec, max_frames=90)
    frames = timeline.data()["frame"].tolist()
    assert timeline.frames == 90 and set(frames) == set(range(90))  # her face is in every frame
    assert share_of_main_track(timeline) >= 0.95
    assert len(timeline.summary()[0].share) == 7


def test_a_clip_without_faces_has_an_empty_timeline(rec, media_dir):
    timeline = analyze(media_dir / "video" / "pyfeat_no_face.mp4", rec, max_frames=24)
    assert timeline.frames == 24 and len(timeline) == 0 and timeline.summary() == []
