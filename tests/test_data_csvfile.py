"""Any CSV of path,label[,split] rows: header names recognised or given, relative paths, clear row errors."""
from __future__ import annotations

import pytest
from synthetic import band_face, encode

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "set"
    (root / "imgs").mkdir(parents=True)
    for k, label in enumerate(["angry", "happy", "sad", "surprise"]):
        (root / "imgs" / f"{k}.jpg").write_bytes(encode(band_face(label, 24, k, color=True)))
    return root


def _write(root, text, name="labels.csv"):
    (root / name).write_text(text)
    return root / name


def test_path_label_split_rows(images):
    path = _write(images, "path,label,split\nimgs/0.jpg,Anger,train\nimgs/1.jpg,happiness,train\n"
                          "./imgs/2.jpg,sad,validation\nimgs/3.jpg,surprised,test\n")
    ds, report = load_dataset_with_report(path)
    assert report.format == "csv" and ds.label_names == ("angry", "happy", "sad", "surprise")
    assert ds.splits.tolist() == ["train", "train", "val", "test"]
    assert ds.sources.tolist() == ["imgs/0.jpg", "imgs/1.jpg", "imgs/2.jpg", "imgs/3.jpg"]
    assert ds.images.shape == (4, 24, 24, 3)
    assert len(load_dataset(images)) == 4  # the folder holding the one CSV reads the same


def test_other_column_names_headerless_files_and_columns_option(images):
    auto = _write(images, "file,emotion,usage,subject\nimgs/0.jpg,angry,Training,A\nimgs/1.jpg,happy,Training,B\n")
    ds = load_dataset(auto)
    assert ds.class_counts() == {"angry": 1, "happy": 1} and ds.groups.tolist() == ["A", "B"]
    bare = _write(images, "imgs/0.jpg,angry\nimgs/1.jpg,sad\n", "bare.csv")
    assert load_dataset(bare).class_counts() == {"angry": 1, "sad": 1}
    given = _write(images, "picture,mood\nimgs/0.jpg,angry\n", "given.csv")
    with pytest.raises(DataError, match=r"given.csv: expected a header naming the image path and label columns"):
        load_dataset(given)
    assert len(load_dataset(given, columns="path=picture,label=mood")) == 1
    with pytest.raises(DataError, match=r"no column 'face' \(columns=path=face,label=mood\)"):
        load_dataset(given, columns="path=face,label=mood")


@pytest.mark.parametrize("row, reason", [
    ("imgs/1.jpg,smirk,train", "unknown emotion class 'smirk'"),
    ("imgs/1.jpg,happy,holdout", "split 'holdout' is not one of train, val, test"),
    ("imgs/9.jpg,happy,train", "image imgs/9.jpg not found"),
    ("imgs/1.jpg", "expected at least 3 columns, found 1"),
    ("../outside.jpg,happy,train", "leaves the CSV's folder"),
])
def test_bad_rows_are_skipped_naming_file_and_line(images, row, reason):
    path = _write(images, f"path,label,split\nimgs/0.jpg,angry,train\n{row}\nimgs/2.jpg,sad,test\n")
    ds, report = load_dataset_with_report(path)
    assert len(ds) == 2
    assert [i.id for i in report.issues] == ["labels.csv line 3"] and reason in report.issues[0].reason
    with pytest.raises(DataError, match=r"strict mode\): labels.csv line 3: "):
        load_dataset(path, strict=True)


def test_numeric_labels_need_a_code_table(images):
    path = _write(images, "path,label\nimgs/0.jpg,0\nimgs/1.jpg,3\n")
    with pytest.raises(DataError, match=r"labels.csv line 2: label '0' is a number; say whose codes"):
        load_dataset(path)
    assert load_dataset(path, codes="fer2013").class_counts() == {"angry": 1, "happy": 1}
    _, report = load_dataset_with_report(path, codes="rafdb")  # RAF-DB counts from 1: 0 is no code
    assert "label '0' is not a rafdb code 1-7" in report.issues[0].reason
