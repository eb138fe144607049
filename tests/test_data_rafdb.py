"""RAF-DB basic: list_patition_label.txt codes and name prefixes, aligned or original images, in colour."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import band_face, write_rafdb

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS

LABELS = "EmoLabel/list_patition_label.txt"


@pytest.fixture
def raf(tmp_path):
    return write_rafdb(tmp_path / "basic", per_class=2, test_per_class=1)


def test_codes_prefixes_and_aligned_names_become_a_colour_dataset(raf):
    ds, report = load_dataset_with_report(raf)
    assert report.format == "rafdb" and ds.name == "rafdb"
    assert ds.label_names == EMOTIONS and ds.images.shape == (21, 24, 24, 3)
    assert ds.available_splits() == ["train", "test"]
    assert ds.split("train").class_counts() == {name: 2 for name in EMOTIONS}
    assert ds.split("test").class_counts() == {name: 1 for name in EMOTIONS}
    # Line 1 is 'train_00001.jpg 1': code 1 is surprise, read from the _aligned file.
    first = list(ds.sources).index("Image/aligned/train_00001_aligned.jpg")
    assert ds.label_names[ds.labels[first]] == "surprise"
    expected = band_face("surprise", 24, 1, color=True)
    assert np.abs(ds.images[first].astype(int) - expected).mean() < 4  # RGB order, not BGR
    assert ds.evaluation_split() == "test"


def test_original_images_and_a_chosen_size(tmp_path):
    root = write_rafdb(tmp_path / "basic", per_class=1, test_per_class=1, variant="original")
    ds = load_dataset(root)
    assert ds.images.shape == (14, 112, 112, 3) and ds.sources[0].startswith("Image/original/")
    assert load_dataset(root, size=32, color="gray").images.shape == (14, 32, 32)


def test_prefers_aligned_and_variant_picks_original(tmp_path):
    root = write_rafdb(tmp_path / "basic", per_class=1, test_per_class=1)
    write_rafdb(root, per_class=1, test_per_class=1, variant="original")
    assert load_dataset(root).sources[0].startswith("Image/aligned/")
    assert load_dataset(root, variant="original").sources[0].startswith("Image/original/")


def test_zip_with_a_wrapper_folder_reads_like_the_folder(raf, tmp_path):
    from synthetic import write_zip

    items = {p.relative_to(raf).as_posix(): p.read_bytes() for p in raf.rglob("*") if p.is_file()}
    zipped = load_dataset(write_zip(tmp_path / "basic.zip", items, prefix="basic/"))
    folder = load_dataset(raf)
    np.testing.assert_array_equal(zipped.images, folder.images)
    assert zipped.sources.tolist() == folder.sources.tolist()


@pytest.mark.parametrize("line, reason", [
    ("train_00099.jpg", "expected '<image> <code>'"),
    ("train_00001.jpg 8", "code '8' is not one of 1-7"),
    ("train_00001.jpg 0", "code '0' is not one of 1-7"),
    ("val_00001.jpg 3", "starts with neither train_ nor test_"),
    ("train_00001.jpg 3", "train_00001.jpg is listed again (first on line 1)"),
    ("test_00500.jpg 2", "image Image/aligned/test_00500_aligned.jpg not found"),
])
def test_bad_lines_are_skipped_naming_file_and_line(raf, line, reason):
    labels = raf / LABELS
    labels.write_text(labels.read_text() + line + "\n")
    ds, report = load_dataset_with_report(raf)
    assert len(ds) == 21
    assert [i.id for i in report.issues] == [f"{LABELS} line 22"]
    assert reason in report.issues[0].reason
    with pytest.raises(DataError, match=rf"1 unusable item\(s\) \(strict mode\): {LABELS} line 22: "):
        load_dataset(raf, strict=True)


def test_corrupt_image_names_the_line_and_the_file(raf):
    (raf / "Image/aligned/train_00003_aligned.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    _, report = load_dataset_with_report(raf)
    assert [str(i) for i in report.issues] == [
        f"{LABELS} line 3: Image/aligned/train_00003_aligned.jpg: not a decodable image"]


def test_missing_images_folder_and_missing_label_file(raf, tmp_path):
    import shutil

    shutil.rmtree(raf / "Image")
    with pytest.raises(DataError, match=r"no images in Image/original/; RAF-DB basic keeps them in Image/aligned/"):
        load_dataset(raf)
    (raf / LABELS).unlink()
    (raf / "Image" / "aligned").mkdir(parents=True)
    with pytest.raises(DataError, match=r"format rafdb: expected EmoLabel/list_patition_label.txt"):
        load_dataset(raf, format="rafdb")


def test_label_file_given_by_itself(raf):
    ds = load_dataset(raf / LABELS)
    assert ds.name == "rafdb" and len(ds) == 21
