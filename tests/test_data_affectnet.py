"""AffectNet: training.csv / validation.csv rows, face boxes cropped, codes 8-10 left out, valence and arousal
kept, --classes 7 or 8."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import AFFECTNET_HEADER, band_face, write_affectnet

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS, EMOTIONS_WITH_CONTEMPT

TRAIN = "Manually_Annotated_file_lists/training.csv"


@pytest.fixture
def affectnet(tmp_path):
    return write_affectnet(tmp_path / "AffectNet", per_class=2, val_per_class=1)


def test_rows_become_cropped_faces_with_valence_and_arousal(affectnet):
    ds, report = load_dataset_with_report(affectnet, size=40)
    assert report.format == "affectnet" and ds.label_names == EMOTIONS_WITH_CONTEMPT
    assert ds.images.shape == (24, 40, 40, 3)
    assert ds.available_splits() == ["train", "test"]  # validation.csv is what papers test on
    assert ds.split("test").class_counts() == {name: 1 for name in EMOTIONS_WITH_CONTEMPT}
    assert report.excluded == {"not an expression (none)": 2, "not an expression (uncertain)": 2,
                               "not an expression (no face)": 2}
    # The row for expression 6 (anger): the box (10, 20, 40, 40) holds its band face, not the photo around it.
    i = int(np.flatnonzero(ds.labels == EMOTIONS_WITH_CONTEMPT.index("angry"))[0])
    seed = int(ds.sources[i].split("/")[1][1:5])
    assert np.abs(ds.images[i].astype(int) - band_face("angry", 40, seed, color=True)).mean() < 4
    codes = np.array([EMOTIONS_WITH_CONTEMPT.index(n) for n in
                      ("neutral", "happy", "sad", "surprise", "fear", "disgust", "angry", "contempt")])
    code = np.argsort(codes)[ds.labels]  # back to AffectNet's code per face
    np.testing.assert_allclose(ds.extras["valence"], code / 10, atol=1e-6)
    np.testing.assert_allclose(ds.extras["arousal"], -code / 10, atol=1e-6)


def test_default_size_and_classes(affectnet):
    ds = load_dataset(affectnet)
    assert ds.images.shape[1:] == (112, 112, 3)
    seven, report = load_dataset_with_report(affectnet, classes=7)
    assert seven.label_names == EMOTIONS and len(seven) == 21
    assert report.excluded["classes outside --classes 7"] == 3
    assert len(seven.extras["valence"]) == 21
    assert load_dataset(affectnet, classes=8).label_names == EMOTIONS_WITH_CONTEMPT


def _append(root, *rows):
    path = root / TRAIN
    path.write_text(path.read_text() + "".join(r + "\n" for r in rows))
    return len(path.read_text().splitlines())


@pytest.mark.parametrize("row, reason", [
    ("1/t0001.jpg,10,20,40", "expected 9 columns, found 4"),
    ("1/t0001.jpg,10,20,40,40,,x,0,0", "expression 'x' is not a code 0-10"),
    ("1/t0001.jpg,10,20,40,40,,11,0,0", "expression '11' is not a code 0-10"),
    ("1/t0001.jpg,10,twenty,40,40,,3,0,0", "face box, valence and arousal must be numbers"),
    ("1/t0001.jpg,10,20,40,40,,3,nan,0", "must be finite numbers"),
    ("9/missing.jpg,10,20,40,40,,3,0,0", "image Manually_Annotated_Images/9/missing.jpg not found"),
    ("2/t0001.jpg,500,20,40,40,,3,0,0", "face box (x, y, w, h) = (500, 20, 40, 40) lies outside the 60x80 image"),
    ("2/t0001.jpg,10,20,0,40,,3,0,0", "empty face box"),
])
def test_bad_rows_are_skipped_naming_file_and_line(affectnet, row, reason):
    line = _append(affectnet, row)
    ds, report = load_dataset_with_report(affectnet)
    assert len(ds) == 24
    assert [i.id for i in report.issues] == [f"{TRAIN} line {line}"]
    assert reason in report.issues[0].reason
    with pytest.raises(DataError, match=rf"strict mode\): {TRAIN} line {line}: "):
        load_dataset(affectnet, strict=True)


def test_box_reaching_past_the_border_is_kept_with_a_warning(affectnet):
    _append(affectnet, "2/t0001.jpg,40,60,40,40,,3,0,0")
    ds, report = load_dataset_with_report(affectnet)
    assert len(ds) == 25 and not report.issues
    assert any("1 face box(es) reach past their image's border" in w for w in report.warnings)


def test_wrong_header_names_the_file(affectnet):
    (affectnet / TRAIN).write_text("path,label\n1/t0001.jpg,3\n")
    (affectnet / "Manually_Annotated_file_lists/validation.csv").unlink()
    with pytest.raises(DataError, match="unrecognised dataset layout"):
        load_dataset(affectnet)
    with pytest.raises(DataError, match=r"format affectnet: expected training.csv and/or validation.csv"):
        load_dataset(affectnet, format="affectnet")


def test_one_list_given_by_itself(affectnet):
    ds = load_dataset(affectnet / "Manually_Annotated_file_lists/validation.csv")
    assert ds.available_splits() == ["test"] and len(ds) == 8


def test_a_header_only_training_csv_leaves_the_test_split(affectnet):
    (affectnet / TRAIN).write_text(AFFECTNET_HEADER + "\n")
    ds = load_dataset(affectnet)
    assert ds.available_splits() == ["test"]
