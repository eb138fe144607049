"""JAFFE: labels and subjects from file names such as KA.AN1.39.tiff; folds hold out whole subjects."""
from __future__ import annotations

import pytest
from synthetic import JAFFE_SUBJECTS, band_face, encode, write_jaffe

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.data.splits import kfold
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS


@pytest.fixture
def jaffe(tmp_path):
    return write_jaffe(tmp_path / "JAFFE")


def test_file_names_give_labels_and_subjects(jaffe):
    ds, report = load_dataset_with_report(jaffe)
    assert report.format == "jaffe" and ds.label_names == EMOTIONS
    assert ds.images.shape == (35, 32, 32)  # gray, native size
    assert ds.class_counts() == {name: 5 for name in EMOTIONS}
    labels = dict(zip(ds.sources.tolist(), (ds.label_names[i] for i in ds.labels)))
    assert labels["KA.AN1.1.tiff"] == "angry" and labels["KA.SU1.7.tiff"] == "surprise"
    assert labels["KL.NE1.12.tiff"] == "neutral"
    assert sorted(set(ds.groups.tolist())) == list(JAFFE_SUBJECTS)


def test_folds_are_by_subject(jaffe):
    ds = load_dataset(jaffe)
    folds = kfold(ds, 5, seed=0)
    held_out = [sorted(set(ds.groups[val].tolist())) for _, val in folds]
    assert sorted(s for subjects in held_out for s in subjects) == list(JAFFE_SUBJECTS)
    assert all(len(subjects) == 1 for subjects in held_out)


@pytest.mark.parametrize("name, reason", [
    ("KA.XX1.99.tiff", "unknown expression code 'XX'; expected one of AN, DI, FE, HA, NE, SA, SU"),
    ("portrait.tiff", "name does not follow JAFFE's SUBJECT.CODE<take>.<number>.tiff"),
])
def test_badly_named_pictures_are_reported(jaffe, name, reason):
    (jaffe / "jaffe" / name).write_bytes(encode(band_face("happy", 32), ".tiff"))
    ds, report = load_dataset_with_report(jaffe)
    assert len(ds) == 35
    assert [(i.id, i.reason.startswith(reason)) for i in report.issues] == [(name, True)]
    with pytest.raises(DataError, match=rf"strict mode\): {name}"):
        load_dataset(jaffe, strict=True)


def test_other_file_types_are_junk(jaffe):
    (jaffe / "jaffe" / "README").write_text("JAFFE")
    (jaffe / "jaffe" / ".DS_Store").write_bytes(b"\0")
    _, report = load_dataset_with_report(jaffe, strict=True)
    assert report.junk_skipped == 2 and not report.issues
