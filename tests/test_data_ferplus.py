"""FER+: fer2013new.csv votes over the original fer2013.csv pixels, and the FER+ authors' label modes."""
from __future__ import annotations

import numpy as np
import pytest
from synthetic import face, write_ferplus

from ferkit.data import load_dataset
from ferkit.data.loader import load_dataset_with_report
from ferkit.errors import DataError
from ferkit.labels import EMOTIONS, EMOTIONS_WITH_CONTEMPT

#   neutral happiness surprise sadness anger disgust fear contempt unknown NF
VOTES = [
    ("Training", "fer0000000.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),  # happy, unanimous
    ("Training", "fer0000001.png", [0, 5, 1, 1, 1, 1, 1, 0, 0, 0]),   # single votes are noise: happy 5/5
    ("Training", "fer0000002.png", [4, 4, 2, 0, 0, 0, 0, 0, 0, 0]),   # no majority
    ("Training", "", [10, 0, 0, 0, 0, 0, 0, 0, 0, 0]),                 # no image name: no face
    ("PublicTest", "fer0000004.png", [0, 0, 0, 0, 0, 0, 0, 0, 8, 2]),  # won by unknown
    ("PublicTest", "fer0000005.png", [2, 0, 0, 0, 0, 0, 0, 0, 0, 8]),  # won by NF
    ("PublicTest", "fer0000006.png", [5, 0, 3, 2, 0, 0, 0, 0, 0, 0]),  # neutral 5 of 10: not more than half
    ("PrivateTest", "fer0000007.png", [0, 0, 0, 0, 0, 0, 0, 6, 2, 2]),  # contempt 6/10
    ("PrivateTest", "fer0000008.png", [0, 0, 0, 0, 7, 3, 0, 0, 0, 0]),  # anger 7, disgust 3
]


@pytest.fixture
def ferplus(tmp_path):
    return write_ferplus(tmp_path / "FERPlus", VOTES)


def _by_name(ds):
    return {s: ds.label_names[i] for s, i in zip(ds.sources.tolist(), ds.labels)}


def test_majority_follows_the_authors_rules(ferplus):
    ds, report = load_dataset_with_report(ferplus)
    assert report.format == "ferplus" and report.label_mode == "majority"
    assert ds.label_names == EMOTIONS_WITH_CONTEMPT and ds.targets is None
    assert _by_name(ds) == {"fer0000000.png": "happy", "fer0000001.png": "happy", "fer0000007.png": "contempt",
                            "fer0000008.png": "angry"}
    assert report.excluded == {"no image name (FER+ found no face)": 1, "no agreement among the annotators": 2,
                               "won by unknown": 1, "won by NF (not a face)": 1}
    assert ds.splits.tolist() == ["train", "train", "privatetest", "privatetest"]


def test_pixels_come_from_the_matching_fer2013_row(ferplus):
    ds = load_dataset(ferplus)
    # fer0000007.png is row 9 of both files (line 1 is the header): the 8th face written.
    i = ds.sources.tolist().index("fer0000007.png")
    np.testing.assert_array_equal(ds.images[i], face(8))
    assert ds.images.shape[1:] == (48, 48)


def test_crossentropy_and_probability_give_soft_targets(ferplus):
    for mode in ("crossentropy", "probability"):
        ds = load_dataset(ferplus, label_mode=mode)
        assert ds.target_mode == mode
        targets = dict(zip(ds.sources.tolist(), ds.targets))
        col = {n: k for k, n in enumerate(EMOTIONS_WITH_CONTEMPT)}
        # 4 neutral + 4 happiness hold 80% >= 75%: both, half each; the 2 surprise votes are not needed.
        assert targets["fer0000002.png"][col["neutral"]] == pytest.approx(0.5)
        assert targets["fer0000002.png"][col["happy"]] == pytest.approx(0.5)
        # 5 neutral (50%), 3 surprise (80%): stop there.
        np.testing.assert_allclose(targets["fer0000006.png"][[col["neutral"], col["surprise"]]], [5 / 8, 3 / 8])
        np.testing.assert_allclose(targets["fer0000008.png"][[col["angry"], col["disgust"]]], [0.7, 0.3])
        assert np.allclose(ds.targets.sum(1), 1)
        assert ds.label_names[ds.labels[ds.sources.tolist().index("fer0000006.png")]] == "neutral"


def test_multi_target_keeps_classes_with_30_percent(ferplus):
    ds = load_dataset(ferplus, label_mode="multi_target")
    targets = dict(zip(ds.sources.tolist(), ds.targets))
    col = {n: k for k, n in enumerate(EMOTIONS_WITH_CONTEMPT)}
    # 5 neutral and 3 surprise reach 30% of 10, the 2 sadness votes do not.
    assert np.count_nonzero(targets["fer0000006.png"]) == 2
    assert targets["fer0000006.png"][col["sad"]] == 0


def test_classes_7_drops_contempt_and_renormalises(ferplus):
    ds = load_dataset(ferplus, label_mode="crossentropy", classes=7)
    assert ds.label_names == EMOTIONS and ds.targets.shape[1] == 7
    assert "fer0000007.png" not in ds.sources
    assert np.allclose(ds.targets.sum(1), 1)


def test_label_mode_is_applied_after_the_cache(ferplus, monkeypatch):
    import ferkit.data.ferplus as reader

    load_dataset(ferplus)
    monkeypatch.setattr(reader, "read", lambda *a: (_ for _ in ()).throw(AssertionError("read again")))
    assert load_dataset(ferplus, label_mode="crossentropy").targets is not None


@pytest.mark.parametrize("line, reason", [
    ("Training,fer0000009.png,0,10,0,0", "expected 12 columns, found 6"),
    ("Training,fer0000009.png,0,x,0,0,0,0,0,0,0,0", "vote counts must be whole numbers"),
    ("Validation,fer0000009.png,0,10,0,0,0,0,0,0,0,0", "Usage 'Validation' is not one of"),
    ("Training,fer0000009.png,0,10,0,0,0,0,0,0,0,0", "fer2013.csv has no row 11"),
])
def test_bad_rows_name_their_line(ferplus, line, reason):
    path = ferplus / "fer2013new.csv"
    path.write_text(path.read_text() + line + "\n")
    ds, report = load_dataset_with_report(ferplus)
    assert len(ds) == 4
    assert [i.id for i in report.issues] == ["fer2013new.csv line 11"]
    assert reason in report.issues[0].reason
    with pytest.raises(DataError, match=r"strict mode\): fer2013new.csv line 11: "):
        load_dataset(ferplus, strict=True)


def test_files_out_of_step(ferplus):
    path = ferplus / "fer2013new.csv"
    path.write_text(path.read_text().replace("PrivateTest,fer0000008.png", "Training,fer0000008.png"))
    _, report = load_dataset_with_report(ferplus)
    assert [i.id for i in report.issues] == ["fer2013new.csv line 10"]
    assert "Usage Training but fer2013.csv row 10 is privatetest" in report.issues[0].reason


def test_missing_fer2013_csv_and_a_wrong_header(ferplus, tmp_path):
    original = ferplus / "fer2013.csv"
    moved = tmp_path / "elsewhere.csv"
    original.rename(moved)
    with pytest.raises(DataError, match=r"need the original fer2013.csv whose rows they follow"):
        load_dataset(ferplus)
    assert len(load_dataset(ferplus, fer2013_csv=str(moved))) == 4
    (ferplus / "fer2013new.csv").write_text("Usage,Image name,happy\n")
    with pytest.raises(DataError, match=r"fer2013new.csv: expected the FER\+ header Usage,Image name,neutral"):
        load_dataset(ferplus, fer2013_csv=str(moved))


def test_label_mode_on_another_dataset_is_refused(tmp_path):
    from synthetic import standard_items, write_folder

    with pytest.raises(DataError, match=r"label_mode 'majority' applies to FER\+"):
        load_dataset(write_folder(tmp_path / "fer", standard_items()), label_mode="majority")

