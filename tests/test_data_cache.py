"""The decoded-array cache: a second read does not decode, a changed source is read again."""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from synthetic import face, jpeg, standard_items, write_csv, write_folder, write_zip

import ferkit.data.fer2013 as fer2013
import ferkit.data.loader as loader
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError


def _forbid_decoding(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("decoded although the cache should have been used")

    monkeypatch.setattr(fer2013, "decode_gray_many", fail)
    monkeypatch.setattr(loader, "read_csv", fail)


@pytest.fixture(params=["folder", "zip", "csv"])
def source(request, tmp_path):
    items = standard_items()
    writers = {"folder": lambda: write_folder(tmp_path / "fer", items),
               "zip": lambda: write_zip(tmp_path / "fer.zip", items),
               "csv": lambda: write_csv(tmp_path / "fer2013.csv", items)}
    return request.param, writers[request.param](), items


def test_second_read_comes_from_cache_without_decoding(source, monkeypatch):
    _, path, _ = source
    first, report = load_dataset_with_report(path)
    assert not report.from_cache and os.path.isfile(report.cache_file)
    _forbid_decoding(monkeypatch)
    second, report = load_dataset_with_report(path)
    assert report.from_cache
    for field in ("images", "labels", "splits", "sources"):
        np.testing.assert_array_equal(getattr(second, field), getattr(first, field))
    assert second.label_names == first.label_names


def test_changed_source_is_read_again(source):
    kind, path, items = source
    load_dataset_with_report(path)
    extra = {"train/happy/Training_777.jpg": jpeg(face(777))}
    if kind == "folder":
        write_folder(path, extra)
    elif kind == "zip":
        write_zip(path, {**items, **extra})
    else:
        write_csv(path, {**items, **extra})
    ds, report = load_dataset_with_report(path)
    assert not report.from_cache and len(ds) == len(items) + 1


def test_same_size_content_change_in_zip_is_detected(tmp_path):
    items = standard_items()
    path = write_zip(tmp_path / "fer.zip", items)
    load_dataset_with_report(path)
    # Same names, same sizes, different pixels: only the CRC in the central directory changes.
    data = bytearray(items["train/angry/Training_1.jpg"])
    data[-3] ^= 0x01
    items["train/angry/Training_1.jpg"] = bytes(data)
    write_zip(path, items)
    assert not load_dataset_with_report(path)[1].from_cache


def test_no_cache_neither_reads_nor_writes(tmp_path, monkeypatch):
    path = write_zip(tmp_path / "fer.zip", standard_items())
    cache = tmp_path / "cache"
    ds, report = load_dataset_with_report(path, cache=False, cache_dir=cache)
    assert report.cache_file is None and not cache.exists()


def test_cache_dir_argument(tmp_path):
    path = write_zip(tmp_path / "fer.zip", standard_items())
    _, report = load_dataset_with_report(path, cache_dir=tmp_path / "mine")
    assert os.path.dirname(report.cache_file) == str(tmp_path / "mine")
    assert [p.suffix for p in (tmp_path / "mine").iterdir()] == [".npz"]  # no temporary file left behind


def test_unreadable_cache_file_is_replaced(tmp_path, caplog):
    path = write_zip(tmp_path / "fer.zip", standard_items())
    _, report = load_dataset_with_report(path)
    with open(report.cache_file, "wb") as fh:
        fh.write(b"PK\x03\x04 half-written")
    ds, report = load_dataset_with_report(path)
    assert not report.from_cache and "ignoring unreadable cache file" in caplog.text
    assert load_dataset_with_report(path)[1].from_cache


def test_cached_issues_still_fail_strict(tmp_path, monkeypatch):
    items = standard_items()
    items["train/sad/Training_bad.jpg"] = b"garbage"
    path = write_zip(tmp_path / "fer.zip", items)
    _, report = load_dataset_with_report(path)
    assert len(report.issues) == 1
    _forbid_decoding(monkeypatch)
    with pytest.raises(DataError, match="Training_bad.jpg"):
        load_dataset_with_report(path, strict=True)
    assert load_dataset_with_report(path)[1].issues[0].id == "train/sad/Training_bad.jpg"


def test_cache_holds_nothing_pickled(tmp_path):
    path = write_zip(tmp_path / "fer.zip", standard_items())
    _, report = load_dataset_with_report(path)
    with np.load(report.cache_file, allow_pickle=False) as npz:
        assert set(npz.files) == {"images", "labels", "splits", "sources", "meta"}
        assert zipfile.ZipFile(report.cache_file).infolist()[0].compress_type == zipfile.ZIP_STORED
