"""The models that ship inside the package: small, self-describing, and exactly as good as their card says."""
from __future__ import annotations

import json
import zipfile

import cv2
import numpy as np
import pytest

from ferkit.models.checkpoint import SHIPPED_MODELS, WEIGHTS_DIR, load_checkpoint, load_model
from ferkit.inference.onnx_backend import OnnxClassifier
from ferkit.inference.torch_backend import classify

SHIPPED = [name for name in SHIPPED_MODELS if (WEIGHTS_DIR / f"{name}.pt").is_file()]
pytestmark = pytest.mark.skipif(not SHIPPED, reason="no shipped weights in this tree")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_are_small_and_describe_themselves(name):
    pt, onnx_file = WEIGHTS_DIR / f"{name}.pt", WEIGHTS_DIR / f"{name}.onnx"
    assert onnx_file.is_file(), f"{name}: no ONNX twin for the torch-free `auto` backend"
    assert pt.stat().st_size + onnx_file.stat().st_size < 20e6
    ckpt = load_checkpoint(pt)
    assert "train_state" not in ckpt  # weights only, no optimiser state
    meta = ckpt["meta"]
    assert meta["selected_on"] == "publictest"
    assert "ferkit train" in meta["command"]
    assert meta["metrics"]["accuracy"] == pytest.approx(meta["accuracy_by_tta"][ckpt["config"]["tta"]], abs=1e-9)


@pytest.fixture(scope="module")
def publictest(fer2013_zip):
    """Every 5th FER2013 PublicTest face (718), read straight from the zip, with its label."""
    from ferkit.labels import EMOTIONS

    with zipfile.ZipFile(fer2013_zip) as z:
        names = sorted(n for n in z.namelist() if "PublicTest_" in n and n.endswith(".jpg"))[::5]
        faces = np.stack([cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_GRAYSCALE) for n in names])
    labels = np.array([EMOTIONS.index(n.split("/")[-2]) for n in names])
    return faces, labels


@pytest.mark.integration
@pytest.mark.parametrize("name", SHIPPED)
def test_backends_agree_on_publictest(name, publictest):
    faces, labels = publictest
    model, config = load_model(name)
    p_torch = classify(model, faces, config)
    twin = OnnxClassifier(WEIGHTS_DIR / f"{name}.onnx")
    assert twin.tta == config.tta  # the same inference settings, whichever backend runs them
    p_onnx = twin.predict_proba(faces)
    if twin.quantized:  # INT8: close to the float weights, and as good as its own card says
        # `fast` without TTA moves most (95.8% of these faces keep their label); averaged views settle more.
        assert (p_torch.argmax(1) == p_onnx.argmax(1)).mean() > 0.94
        assert np.abs(p_torch - p_onnx).mean() < 0.02
        card = json.loads(twin.metadata["evaluated"])["metrics"]["accuracy"]
        assert abs((p_onnx.argmax(1) == labels).mean() - card) < 0.04
    else:
        assert np.array_equal(p_torch.argmax(1), p_onnx.argmax(1))
        assert np.abs(p_torch - p_onnx).max() < 1e-3
    # A fifth of publictest lands within a few points of the full-split accuracy the card reports.
    card = load_checkpoint(name)["meta"]["metrics"]["accuracy"]
    assert abs((p_torch.argmax(1) == labels).mean() - card) < 0.04


@pytest.mark.integration
@pytest.mark.slow
def test_evaluate_reproduces_the_default_card(fer2013_zip, capsys):
    # MODEL_CARD.md's publictest numbers come from this very command.
    import json

    from ferkit.cli import main

    if "default" not in SHIPPED:
        pytest.skip("default is not shipped in this tree")
    assert main(["evaluate", "--data", str(fer2013_zip), "--split", "publictest", "--model", "default",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    card = load_checkpoint("default")["meta"]["metrics"]
    for key in ("accuracy", "macro_f1", "weighted_f1", "macro_auc"):
        assert got[key] == pytest.approx(card[key], abs=1e-4), key
    assert got["confusion_matrix"] == card["confusion_matrix"]


@pytest.mark.integration
@pytest.mark.slow
def test_evaluate_on_onnx_reproduces_the_default_twins_card(fer2013_zip, capsys):
    # What the default CPU pipeline gives (the INT8 twin, its TTA on the host), as MODEL_CARD.md states it.
    from ferkit.cli import main

    twin = OnnxClassifier(WEIGHTS_DIR / "default.onnx")
    if "default" not in SHIPPED or not twin.quantized:
        pytest.skip("no INT8 default twin in this tree")
    assert main(["evaluate", "--data", str(fer2013_zip), "--split", "publictest", "--model", "default",
                 "--backend", "onnx", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    card = json.loads(twin.metadata["evaluated"])
    assert got["backend"] == "onnx int8" and got["tta"] == card["tta"] == twin.tta
    assert got["n"] == card["metrics"]["n"] == 3589
    # Integer kernels differ by CPU (VNNI and AMX accumulate in 32 bits; AVX2's vpmaddubsw saturates pairs at
    # 16), so a face or two may flip on another machine: 0.2 points is 7 of 3,589 faces.
    for key in ("accuracy", "macro_f1", "weighted_f1", "macro_auc"):
        assert got[key] == pytest.approx(card["metrics"][key], abs=2e-3), key
