"""Cross-dataset evaluation: a model trained in colour on a RAF-DB-layout dataset, evaluated on a CK+-layout
one by class name, with what was left out said; the models x datasets table as Markdown and CSV."""
from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from synthetic import seeded_checkpoint, tiny_config, write_ckplus, write_rafdb

from ferkit.cli import main
from ferkit.data import load_dataset
from ferkit.errors import FerkitError
from ferkit.evaluation.evaluate import evaluate, evaluate_matrix
from ferkit.labels import EMOTIONS, EMOTIONS_WITH_CONTEMPT


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """RAF-DB and CK+ fixtures (band faces: the band's row is the class) and a model trained on RAF-DB."""
    from ferkit.training.loop import train

    root = tmp_path_factory.mktemp("cross")
    raf = write_rafdb(root / "rafdb", per_class=24, test_per_class=4)
    ck = write_ckplus(root / "ckplus")
    data = load_dataset(raf, val_split=0.15, seed=0)
    cfg = tiny_config(root, in_chans=3, val_split="val", epochs=4, optimizer="adam", lr=3e-3, schedule="constant")
    train(cfg, data)
    other = seeded_checkpoint(root / "seeded" / "best.pt", input_size=24)  # an untrained gray 7-class model
    return {"raf": raf, "ck": ck, "model": root / "run" / "best.pt", "other": other}


def test_a_colour_model_trained_on_rafdb_scores_on_its_test_split(setup):
    from ferkit.models.checkpoint import load_model

    _, config = load_model(setup["model"])
    assert config.in_chans == 3 and config.labels == list(EMOTIONS)
    m = evaluate(str(setup["model"]), setup["raf"]).metrics
    assert m["split"] == "test" and m["dataset"] == "rafdb" and m["n"] == 28
    assert m["accuracy"] > 0.8 and "left_out" not in m


def test_evaluated_on_ckplus_the_shared_classes_count_and_contempt_is_left_out(setup):
    m = evaluate(str(setup["model"]), setup["ck"]).metrics
    assert m["split"] == "all" and m["labels"] == list(EMOTIONS)
    assert m["n"] == 52 - 3  # CK+'s contempt frames: the model has no such class
    assert m["left_out"] == {"shared": list(EMOTIONS), "dataset_classes_left_out": {"contempt": 3},
                             "model_classes_not_in_dataset": []}
    assert m["accuracy"] > 0.8  # gray CK+ frames go through the colour model's one conversion
    assert "left_out" not in evaluate(str(setup["model"]), setup["ck"], data_options={"classes": 7}).metrics


def test_a_model_with_extra_classes_is_scored_on_the_shared_ones(setup, tmp_path):
    import torch

    from ferkit.inference.torch_backend import classify
    from ferkit.models import create_model
    from ferkit.models.checkpoint import ModelConfig, load_model, save_checkpoint

    torch.manual_seed(0)
    config = ModelConfig(arch="baseline_cnn", num_classes=8, input_size=24, labels=list(EMOTIONS_WITH_CONTEMPT))
    path = tmp_path / "eight.pt"
    save_checkpoint(path, create_model("baseline_cnn", 8, 1, 24), config)
    m = evaluate(str(path), setup["raf"]).metrics
    assert m["left_out"]["model_classes_not_in_dataset"] == ["contempt"] and m["labels"] == list(EMOTIONS)
    model, config = load_model(path)
    test = load_dataset(setup["raf"]).split("test")
    probs = classify(model, test.images, config)
    assert m["accuracy"] == pytest.approx(np.mean(probs[:, :7].argmax(1) == test.labels))
    assert m["accuracy_all_outputs"] == pytest.approx(np.mean(probs.argmax(1) == test.labels))


def test_models_and_datasets_that_share_no_class_are_refused(setup, tmp_path):
    from ferkit.models import create_model
    from ferkit.models.checkpoint import ModelConfig, save_checkpoint

    config = ModelConfig(arch="baseline_cnn", num_classes=2, input_size=24, labels=["pain", "no pain"])
    save_checkpoint(tmp_path / "pain.pt", create_model("baseline_cnn", 2, 1, 24), config)
    with pytest.raises(FerkitError, match="they share no class"):
        evaluate(str(tmp_path / "pain.pt"), setup["ck"])


def test_matrix_of_models_and_datasets(setup):
    table = evaluate_matrix([str(setup["model"]), str(setup["other"])], [setup["raf"], setup["ck"]])
    rows = table.table()
    assert [(r["model"], r["dataset"]) for r in rows] == [("run/best.pt", "rafdb"), ("seeded/best.pt", "rafdb"),
                                                          ("run/best.pt", "ckplus"), ("seeded/best.pt", "ckplus")]
    assert rows[2]["left_out"] == "contempt (3)" and rows[2]["n"] == 49
    parsed = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [p["dataset"] for p in parsed] == ["rafdb", "rafdb", "ckplus", "ckplus"]
    assert float(parsed[2]["accuracy"]) == pytest.approx(rows[2]["accuracy"], abs=1e-4)
    md = table.to_markdown()
    assert md.splitlines()[0] == "| model | rafdb | ckplus |"
    assert md.splitlines()[2].startswith("| run/best.pt | ")
    assert "- run/best.pt on ckplus (all, n=49): contempt (3)" in md


def test_cli_matrix_writes_markdown_and_csv(setup, tmp_path, capsys):
    out = tmp_path / "table"
    args = ["evaluate", "--model", str(setup["model"]), str(setup["other"]), "--data", str(setup["raf"]),
            str(setup["ck"])]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed == (out / "cross_dataset.md").read_text()
    assert len((out / "cross_dataset.csv").read_text().splitlines()) == 5
    assert main([*args, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 4
    assert main([*args, "--occlusion", "upper"]) == 2
    assert "apply to one model on one dataset" in capsys.readouterr().err


def test_cli_single_cross_dataset_report_says_what_was_left_out(setup, capsys):
    assert main(["evaluate", "--model", str(setup["model"]), "--data", str(setup["ck"])]) == 0
    out = capsys.readouterr().out
    assert "evaluated on the 7 classes model and dataset share; left out the dataset's contempt (3 faces)" in out
    assert main(["evaluate", "--model", str(setup["model"]), "--data", str(setup["ck"]), "--classes", "7",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 49


class _BrightSquareDetector:
    """Finds the one face the test photos can hold, at (8, 20, 24, 24) once padded to a square, if it is there."""

    name = "test"

    def detect(self, image, color="bgr"):
        from ferkit.inference.detectors import Detection

        return [Detection((8.0, 20.0, 24.0, 24.0), 0.9)] if image[20:44, 8:32].std() > 20 else []


def test_whole_photos_go_through_the_detector_and_missed_faces_count_as_wrong(setup, tmp_path):
    from synthetic import band_face, encode

    root = tmp_path / "photos"
    labels = ["happy", "sad", "surprise", "angry", "fear", "neutral"]
    for k, label in enumerate(labels):
        photo = np.full((48, 64, 3), 90, np.uint8)
        if k < 5:  # the neutral photo shows no face
            photo[12:36, 8:32] = band_face(label, 24, 700 + k, color=True)
        (root / label).mkdir(parents=True)
        (root / label / f"p{k}.jpg").write_bytes(encode(photo))
    m = evaluate(str(setup["model"]), root, data_options={"size": 64}, detector=_BrightSquareDetector()).metrics
    assert m["n"] == 6 and m["n_detected"] == 5
    assert m["no_face"] == {"count": 1, "examples": ["neutral/p5.jpg"]}
    assert m["accuracy_detected"] == 1.0 and m["accuracy"] == pytest.approx(5 / 6)
