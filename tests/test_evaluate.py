"""Evaluation: the JSON contract, reports, occlusion, leak exclusion and clear errors."""
import json

import numpy as np
import pytest

from ferkit.transforms.augment import AugmentConfig
from ferkit.models.checkpoint import ModelConfig, load_model, save_checkpoint
from ferkit.cli import main
from ferkit.errors import FerkitError
from ferkit.evaluation.evaluate import evaluate, evaluate_model, occlude_faces, without_train_copies, write_reports
from ferkit.models import create_model
from ferkit.training.loop import TrainConfig, train
from synthetic import learnable_dataset, standard_items, write_folder

CONTRACT = {"n", "labels", "accuracy", "macro_f1", "weighted_f1", "weighted_auc", "micro_auc", "macro_auc",
            "per_class", "confusion_matrix"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A baseline_cnn trained on band-position data, and that data."""
    out = tmp_path_factory.mktemp("run")
    data = learnable_dataset(224, 70, 24)
    cfg = TrainConfig(model="baseline_cnn", input_size=24, epochs=4, batch_size=16, optimizer="adam", lr=3e-3,
                      schedule="constant", warmup_epochs=0, out=str(out), progress=False, threads=1,
                      augment=AugmentConfig(hflip=0, rotate=0, shift=0, zoom=0, shear=0, erase=0))
    train(cfg, data)
    return out / "best.pt", data


def test_metrics_follow_the_contract_and_match_the_predictions(trained):
    ckpt, data = trained
    result = evaluate(str(ckpt), data, "publictest")
    m = result.metrics
    assert CONTRACT <= set(m)
    assert m["n"] == 70 and m["labels"] == list(data.label_names)
    assert m["accuracy"] == pytest.approx((result.probs.argmax(1) == data.split("val").labels).mean())
    assert np.array(m["confusion_matrix"]).sum() == 70
    assert m["accuracy"] > 0.5


def test_the_onnx_backend_evaluates_what_the_cpu_pipeline_runs(trained, tmp_path, monkeypatch):
    ckpt, data = trained
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))  # the checkpoint is exported once, here
    torch_run = evaluate(str(ckpt), data, "publictest", tta="flip")
    onnx_run = evaluate(str(ckpt), data, "publictest", tta="flip", backend="onnx")
    assert onnx_run.metrics["backend"] == "onnx" and "backend" not in torch_run.metrics
    assert onnx_run.metrics["tta"] == "flip"
    assert np.allclose(onnx_run.probs, torch_run.probs, atol=1e-4)
    hidden = evaluate(str(ckpt), data, "publictest", occlusion="upper", backend="onnx")
    assert hidden.metrics["accuracy"] < onnx_run.metrics["accuracy"] - 0.2  # masks reach the ONNX backend too
    with pytest.raises(FerkitError, match="unknown backend 'tflite'"):
        evaluate(str(ckpt), data, "publictest", backend="tflite")


def test_occluding_the_informative_rows_hurts(trained):
    ckpt, data = trained
    model, config = load_model(ckpt)
    val = data.split("publictest")
    full = evaluate_model(model, config, val).metrics["accuracy"]
    hidden = evaluate_model(model, config, val, occlusion="upper").metrics["accuracy"]
    assert hidden < full - 0.2  # the class bands of the upper classes vanish under the mask


def test_occlude_faces_keeps_dtype_and_layout():
    faces = np.full((2, 8, 8), 200, np.uint8)
    out = occlude_faces(faces, "lower")
    assert out.dtype == np.uint8 and out.shape == faces.shape
    assert (out[:, :4] == 200).all() and (out[:, 4:] == 0).all()


def test_leaked_test_images_can_be_excluded():
    data = learnable_dataset(70, 14, 24)
    data.images[-1] = data.images[0]  # one publictest image is an exact copy of a train image
    val = data.split("publictest")
    kept, excluded = without_train_copies(data, val)
    assert excluded == 1 and len(kept) == len(val) - 1
    assert data.sources[-1] not in kept.sources


def test_reports_are_written(trained, tmp_path):
    ckpt, data = trained
    paths = write_reports(evaluate(str(ckpt), data), tmp_path)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    assert json.loads((tmp_path / "metrics.json").read_text())["n"] == 70


def test_a_model_for_other_labels_is_refused(tmp_path):
    config = ModelConfig(arch="baseline_cnn", num_classes=3, input_size=24, labels=["a", "b", "c"])
    save_checkpoint(tmp_path / "other.pt", create_model("baseline_cnn", 3, 1, 24), config)
    with pytest.raises(FerkitError, match="labelled"):
        evaluate(str(tmp_path / "other.pt"), learnable_dataset(14, 7, 24))


def test_cli_json_on_a_dataset_folder(trained, tmp_path, capsys):
    ckpt, _ = trained
    folder = write_folder(tmp_path / "fer", standard_items(per_class=2))
    assert main(["evaluate", "--data", str(folder), "--split", "test", "--model", str(ckpt), "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert CONTRACT <= set(m) and m["n"] == 14 and m["split"] == "test"


def test_cli_errors_are_one_clear_line(trained, tmp_path, capsys):
    ckpt, _ = trained
    folder = write_folder(tmp_path / "fer", {k: v for k, v in standard_items().items() if k.startswith("train/")})
    assert main(["evaluate", "--data", str(folder), "--split", "publictest", "--model", str(ckpt)]) == 2
    assert "no 'publictest' split" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(folder), "--model", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(folder), "--model", str(ckpt), "--batch-size", "0"]) == 2
    assert "--batch-size must be at least 1" in capsys.readouterr().err
    assert main(["evaluate", "--data", str(folder), "--model", str(ckpt), "--device", "gpu0"]) == 2
    assert "unknown device 'gpu0'" in capsys.readouterr().err
