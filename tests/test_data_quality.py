"""Quality report (duplicates, leaks, blanks, class table), training-set cleaning and label overrides."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import face, jpeg, standard_items, write_folder, write_zip

from ferkit.data import load_dataset
from ferkit.data.dataset import FaceDataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.data.quality import quality_report, training_mask
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS

DUP = "train/fear/Training_dup{}.jpg"
LEAK_TRAIN, LEAK_TEST = "train/sad/Training_leak.jpg", "test/sad/PublicTest_leak.jpg"
BLANK = "train/neutral/Training_blank.jpg"


@pytest.fixture
def planted(tmp_path):
    """Standard items plus: a train image with two extra copies (one relabelled), a train/test leak,
    a duplicate pair within publictest and a flat gray frame."""
    items = standard_items()
    base = items["train/angry/Training_1.jpg"]
    items[DUP.format(1)] = base
    items[DUP.format(2)] = base
    items[LEAK_TRAIN] = items[LEAK_TEST] = jpeg(face(500))
    items["test/happy/PublicTest_copy.jpg"] = items["test/happy/PublicTest_15.jpg"]
    items[BLANK] = jpeg(np.full((48, 48), 128, np.uint8))
    return write_zip(tmp_path / "planted.zip", items), items


def test_duplicates_leaks_and_blanks_are_found(planted):
    path, items = planted
    report = quality_report(load_dataset(path))
    groups = sorted(sorted(g) for g in report.duplicate_groups)
    assert groups == [sorted(["test/happy/PublicTest_15.jpg", "test/happy/PublicTest_copy.jpg"]),
                      sorted(["train/angry/Training_1.jpg", DUP.format(1), DUP.format(2)])]
    assert report.duplicate_images == 3
    assert report.leak_groups == [{"train": [LEAK_TRAIN], "publictest": [LEAK_TEST]}]
    assert report.leaked_train_images == 1
    assert report.blanks == [BLANK]
    assert report.label_conflicts == 1  # the angry image copied into fear/
    assert report.images_with_copies == 7


def test_class_table_counts_and_percentages():
    labels = np.array([0, 0, 3, 3, 3, 6, 0, 3])
    splits = np.array(["train"] * 6 + ["publictest"] * 2)
    ds = FaceDataset(np.zeros((8, 4, 4), np.uint8) + np.arange(8)[:, None, None].astype(np.uint8), labels, splits,
                     np.array([f"x{i}" for i in range(8)]), EMOTIONS, "toy")
    table = quality_report(ds).splits
    assert list(table) == ["train", "publictest"]
    assert table["train"].n == 6 and table["train"].counts["happy"] == 3
    assert table["train"].percent["happy"] == 50.0 and table["train"].percent["angry"] == 33.33
    assert table["publictest"].counts == {**dict.fromkeys(EMOTIONS, 0), "angry": 1, "happy": 1}


def test_drop_cleans_only_the_train_split(planted):
    path, _ = planted
    full = load_dataset(path)
    ds, report = load_dataset_with_report(path, drop=("duplicates", "leaks", "blanks"))
    removed = set(full.sources) - set(ds.sources)
    assert removed == {DUP.format(1), DUP.format(2), LEAK_TRAIN, BLANK}  # first copy kept
    assert report.dropped == {"duplicates": 2, "leaks": 1, "blanks": 1}
    np.testing.assert_array_equal(ds.split("test").sources, full.split("test").sources)


@pytest.mark.parametrize("drop, removed", [
    (("duplicates",), {DUP.format(1), DUP.format(2)}),
    (("leaks",), {LEAK_TRAIN}),
    (("blanks",), {BLANK}),
])
def test_each_drop_option_alone(planted, drop, removed):
    path, _ = planted
    full = load_dataset(path)
    keep, dropped = training_mask(full, drop)
    assert set(full.sources[~keep]) == removed and dropped == {drop[0]: len(removed)}


def test_unknown_drop_option(planted):
    with pytest.raises(DataError, match="unknown drop option.*dupes.*expected any of duplicates, leaks, blanks"):
        load_dataset(planted[0], drop=("dupes",))


def test_leak_with_several_train_copies_drops_them_all(tmp_path):
    items = standard_items()
    items["train/sad/Training_a.jpg"] = items["train/sad/Training_b.jpg"] = items["test/sad/PublicTest_z.jpg"] = \
        jpeg(face(900))
    ds = load_dataset(write_zip(tmp_path / "f.zip", items), drop=("duplicates", "leaks"))
    assert not {"train/sad/Training_a.jpg", "train/sad/Training_b.jpg"} & set(ds.sources)
    assert "test/sad/PublicTest_z.jpg" in ds.sources


def test_label_overrides_csv(tmp_path):
    path = write_folder(tmp_path / "fer", standard_items())
    overrides = tmp_path / "relabel.csv"
    overrides.write_text("path,label\ntrain/angry/Training_1.jpg,Happiness\ntrain/fear/Training_9.jpg,fear\n")
    ds, report = load_dataset_with_report(path, label_overrides=overrides)
    labels = dict(zip(ds.sources, ds.labels))
    assert EMOTIONS[labels["train/angry/Training_1.jpg"]] == "happy"
    assert report.labels_overridden == 1  # the second row restates the existing label


def test_label_overrides_apply_on_cached_reads_too(tmp_path):
    path = write_zip(tmp_path / "f.zip", standard_items())
    load_dataset(path)
    ds = load_dataset(path, label_overrides={"test/angry/PublicTest_3.jpg": "sad"})
    assert EMOTIONS[ds.labels[list(ds.sources).index("test/angry/PublicTest_3.jpg")]] == "sad"


@pytest.mark.parametrize("row, message", [
    ("train/angry/Training_404.jpg,happy", r"relabel.csv line 2: no image 'train/angry/Training_404.jpg'"),
    ("train/angry/Training_1.jpg,bored", r"relabel.csv line 2: unknown emotion class 'bored'"),
    ("train/angry/Training_1.jpg,contempt", r"relabel.csv line 2: label 'contempt' is not a class of fer2013"),
    ("train/angry/Training_1.jpg", r"relabel.csv line 2: expected 2 columns path,label"),
])
def test_bad_label_override(tmp_path, row, message):
    path = write_zip(tmp_path / "f.zip", standard_items())
    overrides = tmp_path / "relabel.csv"
    overrides.write_text(f"path,label\n{row}\n")
    with pytest.raises(DataError, match=message):
        load_dataset(path, label_overrides=overrides)


def test_missing_override_file(tmp_path):
    path = write_zip(tmp_path / "f.zip", standard_items())
    with pytest.raises(DataError, match="label-override file not found"):
        load_dataset(path, label_overrides=tmp_path / "nope.csv")


def test_class_count_plot(tmp_path, planted):
    from ferkit.plots.data import plot_class_counts

    out = plot_class_counts(quality_report(load_dataset(planted[0])), tmp_path / "plots" / "counts.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
