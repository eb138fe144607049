"""ExpW: label.lst rows (image face_id top left right bottom confidence label), boxes cropped from the photos."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import band_face, write_expw

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS

LST = "data/label/label.lst"


@pytest.fixture
def expw(tmp_path):
    return write_expw(tmp_path / "ExpW", photos=7)


def test_each_row_is_a_face_cropped_from_its_box(expw):
    ds, report = load_dataset_with_report(expw, size=24)
    assert report.format == "expw" and ds.label_names == EMOTIONS
    assert ds.images.shape == (14, 24, 24, 3)  # two faces in each of 7 photos
    assert ds.class_counts() == {"angry": 1, "disgust": 1, "fear": 1, "happy": 1, "neutral": 8, "sad": 1,
                                 "surprise": 1}
    i = ds.sources.tolist().index("fear_actor_2.jpg#0")  # code 2 (FER2013's order): fear
    assert ds.label_names[ds.labels[i]] == "fear"
    assert np.abs(ds.images[i].astype(int) - band_face("fear", 24, 2, color=True)).mean() < 4
    assert ds.extras["confidence"][i] == pytest.approx(52.5)


def test_a_box_that_is_not_square_gives_the_square_around_it(expw):
    ds = load_dataset(expw)
    assert ds.images.shape[1:] == (112, 112, 3)
    # Face 1 spans x 34-54 (20 px), y 8-32 (24 px): its 24 px square reaches 2 px past the band on each side.
    i = ds.sources.tolist().index("angry_actor_0.jpg#1")
    face = ds.images[i].astype(int)
    assert np.abs(face[:, :5] - 90).mean() < 6 and np.abs(face[:, -5:] - 90).mean() < 6  # photo background


@pytest.mark.parametrize("line, reason", [
    ("angry_actor_0.jpg 2 4 4 28", "expected 8 fields"),
    ("angry_actor_0.jpg 2 4 4 28 28 9.5 7", "label '7' is not a code 0-6"),
    ("angry_actor_0.jpg 2 4 four 28 28 9.5 3", "must be numbers"),
    ("nobody.jpg 0 4 4 28 28 9.5 3", "image data/image/origin/nobody.jpg not found"),
    ("angry_actor_0.jpg 2 100 100 120 120 9.5 3", "lies outside the 64x48 image"),
    ("angry_actor_0.jpg 2 20 20 10 30 9.5 3", "empty face box"),
])
def test_bad_lines_are_skipped_naming_file_and_line(expw, line, reason):
    path = expw / LST
    path.write_text(path.read_text() + line + "\n")
    ds, report = load_dataset_with_report(expw)
    assert len(ds) == 14
    assert [i.id for i in report.issues] == [f"{LST} line 15"]
    assert reason in report.issues[0].reason
    with pytest.raises(DataError, match=rf"strict mode\): {LST} line 15"):
        load_dataset(expw, strict=True)


def test_label_file_given_by_itself_and_missing_photos(expw):
    assert len(load_dataset(expw / LST)) == 14
    import shutil

    shutil.rmtree(expw / "data" / "image")
    with pytest.raises(DataError, match=r"none of the images data/label/label.lst names \(e.g. angry_actor_0.jpg\) "
                                        r"exist"):
        load_dataset(expw)
