"""CK+: sequences and emotion files (last frames = the emotion, first = neutral), subjects as groups, and the
class-folder crops."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import write_ckplus, write_ckplus_crops

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS_WITH_CONTEMPT

SUBJECTS = ("S005", "S010", "S011", "S014")


@pytest.fixture
def ck(tmp_path):
    # S005 and S011: codes 1, 4, 6 (+ contempt for S005); S010 and S014: codes 3, 5, 7; each also has an
    # unlabelled sequence. Five frames per sequence.
    return write_ckplus(tmp_path / "CK+")


def test_last_frames_carry_the_emotion_and_the_first_is_neutral(ck):
    ds, report = load_dataset_with_report(ck)
    assert report.format == "ckplus" and ds.label_names == EMOTIONS_WITH_CONTEMPT
    sequences = 13  # 3 + 1 for S005, 3 for each other subject
    assert len(ds) == sequences * 4  # 3 emotion frames + 1 neutral frame each
    assert ds.class_counts() == {"angry": 6, "disgust": 6, "fear": 6, "happy": 6, "neutral": 13, "sad": 6,
                                 "surprise": 6, "contempt": 3}
    peak = "cohn-kanade-images/S005/001/S005_001_{:08d}.png"
    labels = dict(zip(ds.sources.tolist(), (ds.label_names[i] for i in ds.labels)))
    assert [labels.get(peak.format(f)) for f in range(1, 6)] == ["neutral", None, "angry", "angry", "angry"]
    assert sorted(set(ds.groups.tolist())) == list(SUBJECTS)
    assert all(src.split("/")[1] == g for src, g in zip(ds.sources, ds.groups))
    assert report.excluded == {"sequences without an emotion file": 4}
    assert ds.available_splits() == ["train"] and ds.evaluation_split() == "all"
    assert ds.images.shape[1:] == (112, 112)  # whole frames, their centre square


def test_frame_counts_are_configurable(ck):
    ds = load_dataset(ck, emotion_frames=1, neutral_frames=0)
    assert len(ds) == 13 and "neutral" not in {ds.label_names[i] for i in ds.labels}
    assert len(load_dataset(ck, emotion_frames=2, neutral_frames=2)) == 13 * 4


@pytest.mark.parametrize("content, reason", [
    ("happy\n", "expected one emotion code 0-7; found 'happy'"),
    ("   9.0000000e+00\n", "found '9.0000000e+00'"),
    ("   2.5\n", "found '2.5'"),
    ("", "found ''"),
])
def test_bad_emotion_file_names_the_file(ck, content, reason):
    emotion = ck / "Emotion/S010/001/S010_001_00000005_emotion.txt"
    emotion.write_text(content)
    ds, report = load_dataset_with_report(ck)
    assert len(ds) == 12 * 4
    assert [(i.id, reason in i.reason) for i in report.issues] == [
        ("Emotion/S010/001/S010_001_00000005_emotion.txt line 1", True)]
    with pytest.raises(DataError, match=r"strict mode\): Emotion/S010/001/S010_001_00000005_emotion.txt line 1"):
        load_dataset(ck, strict=True)


def test_emotion_file_without_frames(ck):
    import shutil

    shutil.rmtree(ck / "cohn-kanade-images/S014/002")
    _, report = load_dataset_with_report(ck)
    assert [str(i) for i in report.issues] == [
        "Emotion/S014/002/S014_002_00000005_emotion.txt: no frames in cohn-kanade-images/S014/002/"]


def test_no_emotion_files_at_all(ck):
    import shutil

    shutil.rmtree(ck / "Emotion")
    (ck / "Emotion").mkdir()
    (ck / "Emotion" / "README").write_text("labels go here")
    with pytest.raises(DataError, match=r"no emotion files in Emotion/; expected Emotion/S005/001/"):
        load_dataset(ck)


def test_corrupt_frame_names_the_emotion_file_and_the_frame(ck):
    (ck / "cohn-kanade-images/S011/001/S011_001_00000004.png").write_bytes(b"\x89PNG broken")
    _, report = load_dataset_with_report(ck)
    assert [str(i) for i in report.issues] == [
        "Emotion/S011/001/S011_001_00000005_emotion.txt line 1: "
        "cohn-kanade-images/S011/001/S011_001_00000004.png: not a decodable image"]


def test_class_folder_crops_are_grouped_by_subject(tmp_path):
    ds, report = load_dataset_with_report(write_ckplus_crops(tmp_path / "crops"))
    assert report.format == "ckplus" and ds.images.shape == (63, 24, 24)
    assert "neutral" not in ds.label_names and "contempt" in ds.label_names  # CK+48 has no neutral folder
    assert ds.class_counts()["sad"] == 9  # the sadness/ folder
    assert sorted(set(ds.groups.tolist())) == ["S010", "S011", "S014"]
    assert ds.sources[0] == "anger/S010_001_00000015.png"  # below the CK+48/ wrapper folder


def test_colour_frames_stay_colour(tmp_path):
    import cv2

    root = write_ckplus(tmp_path / "CK+", subjects=("S005", "S010"))
    frame = root / "cohn-kanade-images/S005/001/S005_001_00000005.png"
    img = cv2.imread(str(frame))
    img[..., 2] = 250  # a red cast: this sequence was filmed in colour
    cv2.imwrite(str(frame), img)
    ds = load_dataset(root)
    assert ds.images.ndim == 4 and ds.channels == 3
    assert np.array_equal(load_dataset(root, color="gray").images.shape[1:], (112, 112))
