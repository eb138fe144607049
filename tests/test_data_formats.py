"""Format detection across datasets, `ferkit data inspect` on every format, `ferkit data formats`."""
from __future__ import annotations

import json

import pytest
from synthetic import (standard_items, write_affectnet, write_ckplus, write_ckplus_crops, write_expw, write_ferplus,
                       write_folder, write_jaffe, write_rafdb)

from ferkit.cli import main
from ferkit.data import load_dataset
from ferkit.data.formats import FORMATS, markdown_table
from ferkit.data.options import FORMATS as FORMAT_NAMES
from ferkit.errors import DataError

FERPLUS_VOTES = [("Training", "fer0000000.png", [0, 10, 0, 0, 0, 0, 0, 0, 0, 0]),
                 ("PublicTest", "fer0000001.png", [9, 1, 0, 0, 0, 0, 0, 0, 0, 0])]
# format -> (writer, faces, face shape)
DATASETS = {
    "fer2013": (lambda p: write_folder(p, standard_items()), 28, [48, 48]),
    "ferplus": (lambda p: write_ferplus(p, FERPLUS_VOTES), 2, [48, 48]),
    "rafdb": (lambda p: write_rafdb(p, per_class=1, test_per_class=1), 14, [24, 24, 3]),
    "affectnet": (lambda p: write_affectnet(p, per_class=1, val_per_class=1), 16, [112, 112, 3]),
    "ckplus": (write_ckplus, 52, [112, 112]),
    "jaffe": (write_jaffe, 35, [32, 32]),
    "expw": (write_expw, 14, [112, 112, 3]),
}


@pytest.mark.parametrize("fmt", list(DATASETS))
def test_inspect_reads_every_format(tmp_path, capsys, fmt):
    writer, n, shape = DATASETS[fmt]
    root = writer(tmp_path / fmt)
    assert main(["data", "inspect", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["load"]["format"] == out["dataset"]["format"] == fmt
    assert out["quality"]["n"] == n and out["dataset"]["face_shape"] == shape
    assert main(["data", "inspect", str(root)]) == 0
    assert f"{n:,} images" in capsys.readouterr().out


def test_inspect_text_shows_subjects_exclusions_and_folds(tmp_path, capsys):
    root = write_ckplus(tmp_path / "CK+")
    assert main(["data", "inspect", str(root), "--folds", "2", "--val-split", "0.25"]) == 0
    out = capsys.readouterr().out
    assert "(CK+, folder," in out and "4 subjects" in out
    assert "excluded by the dataset's rules: 4 sequences without an emotion file" in out
    assert "fold 1:" in out and "fold 2:" in out and "val" in out


def test_class_folder_crops_and_a_forced_format(tmp_path):
    root = write_ckplus_crops(tmp_path / "crops")
    assert load_dataset(root).name == load_dataset(root, format="ckplus").name == "ckplus"
    with pytest.raises(DataError, match=r"format jaffe: expected one folder of pictures named SUBJECT.CODE"):
        load_dataset(root, format="jaffe")
    with pytest.raises(DataError, match=r"unknown dataset format 'fer\+'; expected one of auto, fer2013, ferplus"):
        load_dataset(root, format="fer+")


def test_two_datasets_in_one_tree_are_a_mix(tmp_path, capsys):
    root = write_rafdb(tmp_path / "both", per_class=1, test_per_class=1)
    write_expw(root)
    assert main(["data", "inspect", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert ("a mix of dataset layouts: found RAF-DB (EmoLabel/list_patition_label.txt); "
            "ExpW (data/label/label.lst)") in err
    assert load_dataset(root, format="expw").name == "expw"


def test_bad_option_values_are_one_line_errors(tmp_path, capsys):
    root = write_jaffe(tmp_path / "j")
    for args, message in ((["--size", "3"], "size 3: expected a side in pixels from 8 to 1024"),
                          (["--classes", "6"], "classes 6: expected 7"),
                          (["--classes", "8"], "classes: JAFFE has no contempt class"),
                          (["--codes", "kdef"], "unknown label codes 'kdef'")):
        assert main(["data", "inspect", str(root), *args]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_formats_lists_every_reader(capsys):
    assert {f.name for f in FORMATS} == set(FORMAT_NAMES) - {"auto"}
    assert main(["data", "formats", "--markdown"]) == 0
    table = capsys.readouterr().out
    assert table == markdown_table()
    for f in FORMATS:
        assert f"| `{f.name}` | {f.title} |" in table
    assert "EmoLabel/list_patition_label.txt" in table and "fer2013new.csv" in table
    assert main(["data", "formats", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(FORMATS)
