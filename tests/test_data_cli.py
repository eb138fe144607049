"""`ferkit data inspect`: tables, --json, --plot, and errors without tracebacks."""
from __future__ import annotations

import json

import pytest
from synthetic import standard_items, write_zip

from ferkit.cli import main
from ferkit.labels import EMOTIONS


@pytest.fixture
def dataset(tmp_path):
    items = standard_items()
    items["train/fear/Training_copy.jpg"] = items["train/angry/Training_1.jpg"]
    items["train/sad/Training_leak.jpg"] = items["test/sad/PublicTest_23.jpg"]
    items[".DS_Store"] = b"\0"
    return write_zip(tmp_path / "fer.zip", items)


def test_inspect_json(dataset, tmp_path, capsys):
    plot = tmp_path / "counts.png"
    assert main(["data", "inspect", str(dataset), "--json", "--plot", str(plot),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["quality"]["n"] == len(EMOTIONS) * 4 + 2
    assert list(out["quality"]["splits"]) == ["train", "publictest", "privatetest"]
    assert out["quality"]["splits"]["train"]["counts"]["fear"] == 3
    assert out["quality"]["duplicates"]["groups"] == 1 and out["quality"]["duplicates"]["images"] == 1
    assert out["quality"]["leaks"]["examples"] == [{"train": ["train/sad/Training_leak.jpg"],
                                                    "publictest": ["test/sad/PublicTest_23.jpg"]}]
    assert out["quality"]["blanks"]["count"] == 0
    assert out["load"]["junk_skipped"] == 1 and out["load"]["layout"] == "zip"
    assert out["load"]["cache_file"].startswith(str(tmp_path / "cache"))
    assert out["plot"] == str(plot) and plot.stat().st_size > 0


def test_inspect_text(dataset, capsys):
    assert main(["data", "inspect", str(dataset), "--no-cache"]) == 0
    out = capsys.readouterr().out
    assert "1 junk file(s)" in out
    assert "train/angry/Training_1.jpg = train/fear/Training_copy.jpg" in out
    assert "leaks across splits: 1 group(s), 1 train image(s)" in out
    assert "happy" in out and "(14.29%)" in out  # publictest: one image of each of the 7 classes


@pytest.mark.parametrize("args, message", [
    (["{tmp}/missing"], "no such file or folder"),
    (["{tmp}/fer.zip", "--strict"], "unusable item(s) (strict mode): train/happy/Training_bad.jpg"),
    (["{tmp}/fer.zip", "--label-overrides", "{tmp}/none.csv"], "label-override file not found"),
])
def test_inspect_errors_print_one_line_without_traceback(tmp_path, capsys, args, message):
    items = standard_items()
    items["train/happy/Training_bad.jpg"] = b"broken"
    write_zip(tmp_path / "fer.zip", items)
    assert main(["data", "inspect", *(a.format(tmp=tmp_path) for a in args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ferkit data: error: ") and message in err and "Traceback" not in err
