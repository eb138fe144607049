"""The three FER2013 readers (folder, zip, csv) produce the same dataset from the same images."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import face, jpeg, split_of, standard_items, write_csv, write_folder, write_zip

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.data.readers import decode_gray_many
from ferkit.labels import EMOTIONS


@pytest.fixture
def items():
    return standard_items()


@pytest.fixture
def formats(tmp_path, items):
    return {
        "folder": write_folder(tmp_path / "fer", items),
        "zip": write_zip(tmp_path / "fer.zip", items),
        "csv": write_csv(tmp_path / "fer2013.csv", items),
    }


def test_three_formats_give_identical_arrays_and_labels(formats):
    folder, zipped, table = (load_dataset(formats[k]) for k in ("folder", "zip", "csv"))
    for ds in (zipped, table):
        np.testing.assert_array_equal(ds.images, folder.images)
        np.testing.assert_array_equal(ds.labels, folder.labels)
        np.testing.assert_array_equal(ds.splits, folder.splits)
        assert ds.label_names == folder.label_names == EMOTIONS
    np.testing.assert_array_equal(zipped.sources, folder.sources)
    assert table.sources[0] == "csv:row 2"  # the header is row 1


def test_folder_dataset_contents(formats, items):
    ds = load_dataset(formats["folder"])
    assert ds.images.dtype == np.uint8 and ds.images.shape == (len(items), 48, 48)
    assert ds.labels.dtype == np.int64
    assert ds.sources.tolist() == sorted(items)
    for source, label, split in zip(ds.sources, ds.labels, ds.splits):
        assert EMOTIONS[label] == source.split("/")[1]
        assert split == split_of(source)


def test_test_folder_is_split_by_file_name_prefix(formats):
    ds = load_dataset(formats["zip"])
    assert ds.available_splits() == ["train", "publictest", "privatetest"]
    assert len(ds.split("val")) == len(EMOTIONS)
    assert len(ds.split("test")) == 2 * len(EMOTIONS)
    assert all(s.split("/")[-1].startswith("PublicTest_") for s in ds.split("publictest").sources)


def test_csv_codes_are_remapped_onto_canonical_order(tmp_path):
    # fer2013.csv code 4 is sad and 6 is neutral; in EMOTIONS order neutral comes before sad.
    pixels = " ".join(["7"] * 2304)
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + "".join(f"{c},{pixels},Training\n" for c in range(7)))
    ds = load_dataset(path)
    assert [EMOTIONS[i] for i in ds.labels] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


def test_dataset_with_only_some_splits(tmp_path, items):
    only_test = {k: v for k, v in items.items() if k.startswith("test/")}
    ds = load_dataset(write_zip(tmp_path / "test-only.zip", only_test))
    assert ds.available_splits() == ["publictest", "privatetest"]
    with pytest.raises(Exception, match="no 'train' split"):
        ds.split("train")


def test_zip_with_a_wrapper_folder(tmp_path, items):
    ds = load_dataset(write_zip(tmp_path / "wrapped.zip", items, prefix="fer2013/"))
    assert len(ds) == len(items) and ds.sources[0].startswith("test/")


def test_folder_holding_fer2013_csv(tmp_path, items):
    (tmp_path / "release").mkdir()
    write_csv(tmp_path / "release" / "fer2013.csv", items)
    ds, report = load_dataset_with_report(tmp_path / "release")
    assert len(ds) == len(items) and report.layout == "csv"


def test_csv_inside_zip(tmp_path, items):
    table = write_csv(tmp_path / "fer2013.csv", items)
    zipped = write_zip(tmp_path / "csv.zip", {"fer2013.csv": table.read_bytes()})
    ds, report = load_dataset_with_report(zipped)
    assert report.layout == "zip+csv"
    np.testing.assert_array_equal(ds.images, load_dataset(table).images)


def test_csv_without_usage_column_is_all_train(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels\n3," + " ".join(["1"] * 2304) + "\n")
    ds, report = load_dataset_with_report(path)
    assert ds.splits.tolist() == ["train"] and "no Usage column" in report.warnings[0]


def test_test_images_without_prefix_go_to_publictest_with_a_warning(tmp_path, items):
    renamed = {k.replace("PrivateTest_", "img_"): v for k, v in items.items()}
    ds, report = load_dataset_with_report(write_folder(tmp_path / "fer", renamed))
    assert "privatetest" not in ds.available_splits()
    assert any("PublicTest_" in w for w in report.warnings)


def test_class_folder_spellings_are_canonicalised(tmp_path, items):
    respelled = {k.replace("/happy/", "/Happiness/"): v for k, v in items.items()}
    ds = load_dataset(write_folder(tmp_path / "fer", respelled))
    assert ds.class_counts() == load_dataset(write_folder(tmp_path / "orig", items)).class_counts()


def test_threaded_decoding_matches_sequential():
    blobs = [jpeg(face(i % 7)) for i in range(2100)] + [b"broken", None]
    sequential, threaded = decode_gray_many(blobs, workers=1), decode_gray_many(blobs, workers=3)
    assert threaded[-2:] == ["not a decodable image", "unreadable"]
    assert all((a == b).all() for a, b in zip(sequential[:-2], threaded[:-2]))
