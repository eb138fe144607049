"""`ferkit predict`: the JSON contract of DESIGN.md section 3, per-file errors, and the output options.

The runs use the Haar cascade OpenCV ships; only the YuNet test needs ../shared."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ferkit.assets import sample_image_path
from ferkit.cli import main
from ferkit.labels import EMOTIONS

from synthetic import seeded_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return seeded_checkpoint(tmp_path_factory.mktemp("ckpt") / "seeded.pt")


@pytest.fixture
def folder(tmp_path) -> Path:
    """Two good photos (one face, no face), and every kind of bad file."""
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    sample = Image.open(sample_image_path())
    sample.save(d / "hopper.jpg")
    Image.new("RGB", (120, 90), (30, 120, 200)).save(d / "sky.png")
    (d / "empty.jpg").write_bytes(b"")
    jpeg = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)).save(jpeg, "JPEG")
    (d / "truncated.jpg").write_bytes(jpeg.getvalue()[:2000])
    (d / "notes.png").write_text("this is text, not a picture\n")
    sample.save(d / "sub" / "nested.webp")
    return d


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["predict", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def common(checkpoint) -> list[str]:
    return ["--model", str(checkpoint), "--detector", "haar"]


def test_json_contract_with_bad_files_in_the_run(capsys, folder, checkpoint):
    code, out, err = run(capsys, str(folder), str(folder / "missing.jpg"), "--json", *common(checkpoint))
    assert code == 0
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    assert list(records) == ["empty.jpg", "hopper.jpg", "notes.png", "sky.png", "truncated.jpg", "missing.jpg"]
    for name, words in [("empty.jpg", "empty"), ("notes.png", "not an image"), ("truncated.jpg", "truncated"),
                        ("missing.jpg", "no such file")]:
        assert set(records[name]) == {"path", "error"} and words in records[name]["error"]
    assert records["sky.png"] == {"path": str(folder / "sky.png"), "faces": []}  # no face is not an error
    (face,) = records["hopper.jpg"]["faces"]
    assert list(face) == ["box", "score", "landmarks", "emotion", "probs"]
    assert len(face["box"]) == 4 and all(isinstance(v, int) for v in face["box"])
    assert face["score"] == 1.0 and face["landmarks"] is None  # Haar gives neither a score nor landmarks
    assert list(face["probs"]) == list(EMOTIONS) and face["emotion"] == max(face["probs"], key=face["probs"].get)
    assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-5)
    assert "detector haar" in err and "4 failed" in err


@pytest.mark.integration
def test_detector_model_runs_yunet_with_landmarks(capsys, folder, checkpoint, yunet_model):
    code, out, err = run(capsys, str(folder / "hopper.jpg"), "--json", "--model", str(checkpoint),
                         "--detector", "yunet", "--detector-model", str(yunet_model))
    (face,) = json.loads(out)[0]["faces"]
    assert code == 0 and "detector yunet" in err
    assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"]) and face["score"] < 1


def test_exit_code_is_nonzero_only_when_every_input_failed(capsys, folder, checkpoint):
    code, out, _ = run(capsys, str(folder / "empty.jpg"), str(folder / "notes.png"), "--json", *common(checkpoint))
    assert code == 1 and all("error" in r for r in json.loads(out))
    code, out, _ = run(capsys, str(folder / "empty.jpg"), str(folder / "sky.png"), "--json", *common(checkpoint))
    assert code == 0 and [list(r) for r in json.loads(out)] == [["path", "error"], ["path", "faces"]]


def test_recursive_and_detector_none(capsys, folder, checkpoint):
    _, out, err = run(capsys, str(folder), "--recursive", "--json", "--detector", "none", "--model", str(checkpoint))
    records = {Path(r["path"]).name: r for r in json.loads(out)}
    assert "nested.webp" in records and "detector none" in err
    assert records["sky.png"]["faces"][0]["box"] == [0, 0, 120, 90]


def test_tta_override_reaches_the_classifier(capsys, checkpoint, tmp_path):
    from ferkit import Recognizer

    face = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (48, 48), np.uint8)).save(face)
    probs = {}
    for tta in ("none", "flip"):
        _, out, _ = run(capsys, str(face), "--json", "--detector", "none", "--backend", "torch", "--tta", tta,
                        "--model", str(checkpoint))
        probs[tta] = list(json.loads(out)[0]["faces"][0]["probs"].values())
        expected = Recognizer(model=checkpoint, detector="none", backend="torch", tta=tta).predict(str(face))[0]
        assert np.allclose(probs[tta], list(expected.probs.values()), atol=1e-5)
    assert not np.allclose(probs["none"], probs["flip"], atol=1e-4)


def test_csv_and_annotated_images(capsys, folder, checkpoint, tmp_path):
    table, annotated = tmp_path / "faces.csv", tmp_path / "annotated"
    code, _, err = run(capsys, str(folder / "hopper.jpg"), str(folder / "sky.png"), str(folder / "empty.jpg"),
                       "--csv", str(table), "--save-annotated", str(annotated), *common(checkpoint))
    assert code == 0 and str(table) in err
    rows = list(csv.DictReader(table.open()))
    assert [Path(r["path"]).name for r in rows] == ["hopper.jpg", "empty.jpg"]  # one row per face or error
    assert rows[0]["emotion"] in EMOTIONS and rows[1]["error"]
    assert sorted(p.name for p in annotated.iterdir()) == ["hopper.jpg", "sky.png"]


def test_unwritable_outputs_are_refused_before_any_prediction(capsys, folder, checkpoint, tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    predicted = []
    monkeypatch.setattr("ferkit.inference.recognizer.Recognizer.predict_decoded",
                        lambda self, images: predicted.append(images) or [[] for _ in images])
    args = (str(folder / "hopper.jpg"), "--model", str(checkpoint), "--detector", "haar")
    # --csv is written last: without the up-front check every image was predicted and then nothing saved.
    code, _, err = run(capsys, *args, "--csv", str(blocker / "faces.csv"))
    assert code == 2 and f"--csv {blocker / 'faces.csv'}: cannot write into {blocker}" in err
    code, _, err = run(capsys, *args, "--save-annotated", str(blocker / "annotated"))
    assert code == 2 and "error: Not a directory" in err and "Traceback" not in err
    assert predicted == []


def test_plain_output_names_each_file(capsys, folder, checkpoint):
    _, out, _ = run(capsys, str(folder / "hopper.jpg"), str(folder / "sky.png"), *common(checkpoint))
    lines = out.splitlines()
    assert lines[0].startswith(f"{folder / 'hopper.jpg'}: ") and " at [" in lines[0]
    assert lines[1] == f"{folder / 'sky.png'}: no face"


def test_missing_yunet_offline_fails_each_input_clearly(capsys, folder, checkpoint, monkeypatch):
    monkeypatch.setenv("FERKIT_OFFLINE", "1")
    code, out, err = run(capsys, str(folder / "hopper.jpg"), "--json", "--detector", "yunet",
                         "--model", str(checkpoint))
    (record,) = json.loads(out)
    assert code == 1 and "--detector-model" in record["error"] and "--detector-model" in err


def test_auto_falls_back_to_haar_and_says_so(capsys, folder, checkpoint):
    _, out, err = run(capsys, str(folder / "hopper.jpg"), "--json", "--model", str(checkpoint))
    assert "detector haar" in err
    (face,) = json.loads(out)[0]["faces"]
    assert face["landmarks"] is None
