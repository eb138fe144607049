"""Every bad input gets one clear DataError naming the file, or is skipped and reported.

Policy: junk files are skipped and counted (strict or not); corrupt images, bad CSV rows and empty class
folders are reported and skipped, and fatal with strict=True; layout problems always raise.
"""
from __future__ import annotations

import zipfile

import pytest
from synthetic import csv_row, face, jpeg, standard_items, write_csv, write_folder, write_zip

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError

PIXELS = " ".join(["100"] * 2304)


@pytest.fixture
def items():
    return standard_items()


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"nowhere: no such file or folder; expected train/"):
        load_dataset(tmp_path / "nowhere")


def test_unrecognised_layout_says_what_is_supported_and_what_was_found(tmp_path):
    (tmp_path / "ds" / "images").mkdir(parents=True)
    (tmp_path / "ds" / "labels.txt").write_text("x")
    with pytest.raises(DataError) as err:
        load_dataset(tmp_path / "ds")
    message = str(err.value)
    assert "unrecognised dataset layout" in message and "expected train/ and/or test/" in message
    assert "found: images/, labels.txt" in message


def test_unrecognised_file_type(tmp_path):
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(DataError, match=r"data.txt: unrecognised dataset file.*found a .txt file"):
        load_dataset(tmp_path / "data.txt")


def test_file_that_is_not_a_zip(tmp_path):
    (tmp_path / "fake.zip").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match=r"fake.zip: expected a readable .zip archive"):
        load_dataset(tmp_path / "fake.zip")


@pytest.mark.parametrize("fmt", ["folder", "zip"])
def test_unknown_class_folder_lists_known_names(tmp_path, items, fmt):
    items["train/happyish/Training_999.jpg"] = jpeg(face(999))
    path = write_folder(tmp_path / "fer", items) if fmt == "folder" else write_zip(tmp_path / "f.zip", items)
    with pytest.raises(DataError, match=r"class folder train/happyish/ is not a known emotion; "
                                        r"expected one of angry, disgust, fear, happy"):
        load_dataset(path)


def test_image_outside_class_folder(tmp_path, items):
    items["train/Training_999.jpg"] = jpeg(face(999))
    with pytest.raises(DataError, match=r"image train/Training_999.jpg is not directly inside a class folder"):
        load_dataset(write_folder(tmp_path / "fer", items))


@pytest.mark.parametrize("fmt", ["folder", "zip"])
def test_junk_files_are_skipped_and_counted(tmp_path, items, fmt):
    n = len(items)
    junk = {
        ".DS_Store": b"\0\0\0\1Bud1",
        "train/.DS_Store": b"\0",
        "train/happy/.DS_Store": b"\0",
        "train/happy/Thumbs.db": b"\0",
        "README.md": b"# FER2013",
        "test/angry/notes.txt": b"todo",
        "train/sad/._Training_1.jpg": b"\0\5\26\7",  # AppleDouble resource fork
        "__MACOSX/train/sad/._Training_1.jpg": b"\0\5\26\7",
    }
    items.update(junk)
    path = write_folder(tmp_path / "fer", items) if fmt == "folder" else write_zip(tmp_path / "f.zip", items)
    ds, report = load_dataset_with_report(path, strict=True)  # junk is never fatal
    assert len(ds) == n
    assert report.junk_skipped == len(junk)
    assert ds.label_names == load_dataset(write_zip(tmp_path / "clean.zip", standard_items())).label_names


@pytest.mark.parametrize("fmt", ["folder", "zip"])
def test_corrupt_image_is_reported_and_skipped(tmp_path, items, fmt):
    n = len(items)
    items["train/fear/Training_bad.jpg"] = b"\xff\xd8\xff\xe0 this is not really a jpeg"
    path = write_folder(tmp_path / "fer", items) if fmt == "folder" else write_zip(tmp_path / "f.zip", items)
    ds, report = load_dataset_with_report(path)
    assert len(ds) == n
    assert [i.id for i in report.issues] == ["train/fear/Training_bad.jpg"]
    assert "train/fear/Training_bad.jpg" not in ds.sources
    with pytest.raises(DataError, match=r"1 unusable item\(s\) \(strict mode\): train/fear/Training_bad.jpg"):
        load_dataset(path, strict=True)


def test_truncated_jpeg_is_reported(tmp_path, items):
    whole = jpeg(face(4242))
    items["train/fear/Training_cut.jpg"] = whole[: len(whole) // 2]
    ds, report = load_dataset_with_report(write_folder(tmp_path / "fer", items))
    assert report.issues[0].id == "train/fear/Training_cut.jpg"
    # OpenCV 4.14 refuses it outright; some older builds return a gray-filled image that the EOI check catches.
    assert report.issues[0].reason in ("not a decodable image", "truncated JPEG (no end-of-image marker)")


def test_empty_file_and_wrong_size_image(tmp_path, items):
    items["train/fear/Training_empty.jpg"] = b""
    items["train/fear/Training_big.jpg"] = jpeg(face(7, size=64))
    ds, report = load_dataset_with_report(write_folder(tmp_path / "fer", items))
    reasons = {i.id: i.reason for i in report.issues}
    assert reasons["train/fear/Training_empty.jpg"] == "empty file"
    assert reasons["train/fear/Training_big.jpg"] == "size 64x64, expected 48x48 like the rest"
    assert ds.images.shape[1:] == (48, 48)


def test_corrupt_zip_member_crc_is_reported(tmp_path, items):
    path = write_zip(tmp_path / "f.zip", items)
    raw = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("train/angry/Training_1.jpg")
    raw[info.header_offset + 30 + len(info.filename) + 10] ^= 0xFF  # flip a byte of the compressed data
    path.write_bytes(bytes(raw))
    _, report = load_dataset_with_report(path)
    assert [i.id for i in report.issues] == ["train/angry/Training_1.jpg"]


@pytest.mark.parametrize("content", [None, ".DS_Store"])
def test_empty_class_folder_is_a_warning_and_fatal_when_strict(tmp_path, items, content):
    root = write_folder(tmp_path / "fer", items)
    (root / "train" / "contempt").mkdir()
    if content:
        (root / "train" / "contempt" / content).write_bytes(b"\0")
    ds, report = load_dataset_with_report(root)
    assert [(i.id, i.reason) for i in report.issues] == [("train/contempt/", "class folder has no images")]
    with pytest.raises(DataError, match=r"train/contempt/: class folder has no images"):
        load_dataset(root, strict=True)


def test_dataset_with_no_usable_image(tmp_path):
    (tmp_path / "fer" / "train" / "happy").mkdir(parents=True)
    with pytest.raises(DataError, match="no usable images"):
        load_dataset(tmp_path / "fer")


@pytest.mark.parametrize("entry", ["../evil.jpg", "train/../../evil.jpg", "/etc/evil.jpg", "C:/evil.jpg"])
def test_zip_entry_escaping_the_archive(tmp_path, items, entry):
    path = write_zip(tmp_path / "f.zip", items)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(zipfile.ZipInfo(entry), jpeg(face(1)))
    with pytest.raises(DataError, match=rf"zip entry {entry!r} points outside the archive".replace(".", r"\.")):
        load_dataset(path)


@pytest.mark.parametrize("row, reason", [
    (csv_row(3, " ".join(["1"] * 2303)), "expected 2304 pixel values (48x48), found 2303"),
    (csv_row(7, PIXELS), "emotion '7' is not a code 0-6"),
    (csv_row("happy", PIXELS), "emotion 'happy' is not a code 0-6"),
    (csv_row(3, PIXELS.replace("100", "1x0", 1)), "pixels contain a value that is not an integer"),
    (csv_row(3, PIXELS.replace("100", "300", 1)), "pixel values outside 0-255"),
    (csv_row(3, PIXELS, "Validation"), "Usage 'Validation' is not one of Training, PublicTest, PrivateTest"),
    ("3\n", "expected 3 columns, found 1"),
])
def test_bad_csv_row_names_its_row(tmp_path, row, reason):
    path = tmp_path / "fer2013.csv"
    path.write_text("emotion,pixels,Usage\n" + csv_row(0, PIXELS) + row + csv_row(1, PIXELS, "PublicTest"))
    ds, report = load_dataset_with_report(path)
    assert len(ds) == 2 and ds.sources.tolist() == ["csv:row 2", "csv:row 4"]
    assert [(i.id, i.reason) for i in report.issues] == [("csv:row 3", reason)]
    with pytest.raises(DataError, match=r"fer2013.csv: 1 unusable item\(s\) \(strict mode\): csv:row 3: "):
        load_dataset(path, strict=True)


def test_csv_with_wrong_header(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_text("label,image\n3,1 2 3\n")
    with pytest.raises(DataError, match=r"fer2013.csv: expected a header with columns emotion,pixels,Usage; "
                                        r"found: label,image"):
        load_dataset(path)


def test_csv_that_is_not_text(tmp_path):
    path = tmp_path / "fer2013.csv"
    path.write_bytes(b"emotion,pixels,Usage\n\xff\xfe\x00garbage")
    with pytest.raises(DataError, match=r"fer2013.csv: expected a UTF-8 text CSV"):
        load_dataset(path)


def test_csv_is_read_like_the_folder_even_with_bad_rows_strict_off(tmp_path, items):
    path = write_csv(tmp_path / "fer2013.csv", items)
    with open(path, "a") as fh:
        fh.write(csv_row(9, PIXELS))
    assert len(load_dataset(path)) == len(items)


def test_images_outside_split_folders_are_skipped_with_a_warning(tmp_path, items):
    n = len(items)
    items["extras/photo.jpg"] = items["cover.jpg"] = jpeg(face(31))
    ds, report = load_dataset_with_report(write_folder(tmp_path / "fer", items))
    assert len(ds) == n and report.junk_skipped == 2
    assert "skipped 2 image(s) outside the split folders" in report.warnings[0]
