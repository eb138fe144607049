"""ONNX export: a self-describing file whose ONNX Runtime predictions match PyTorch's."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch

from ferkit import Recognizer
from ferkit.assets import sample_image_path
from ferkit.models.checkpoint import ModelConfig, load_model, save_checkpoint
from ferkit.cli import main
from ferkit.errors import ModelError
from ferkit.inference.export import export_onnx
from ferkit.inference.onnx_backend import OnnxClassifier, load_onnx_classifier
from ferkit.inference.torch_backend import classify
from ferkit.models import create_model


def seeded_checkpoint(path: Path, **config) -> Path:
    torch.manual_seed(0)
    model = create_model("baseline_cnn", input_size=config.get("input_size", 48))
    save_checkpoint(path, model, ModelConfig(arch="baseline_cnn", **config))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return seeded_checkpoint(tmp_path_factory.mktemp("ckpt") / "seeded.pt", tta="flip", temperature=1.5)


@pytest.fixture(scope="module")
def onnx_file(checkpoint, tmp_path_factory) -> Path:
    return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "seeded.onnx")


@pytest.fixture(scope="module")
def publictest_faces(fer2013_zip) -> np.ndarray:
    """200 FER2013 PublicTest faces (48 x 48 gray), read straight from the zip."""
    with zipfile.ZipFile(fer2013_zip) as z:
        names = sorted(n for n in z.namelist() if "PublicTest_" in n and n.endswith(".jpg"))[::15][:200]
        faces = [cv2.imdecode(np.frombuffer(z.read(n), np.uint8), cv2.IMREAD_GRAYSCALE) for n in names]
    assert len(faces) == 200
    return np.stack(faces)


def test_the_file_describes_itself(onnx_file, checkpoint):
    meta = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert {"ferkit.config", "ferkit.tta", "ferkit.labels", "ferkit.source_sha256"} <= set(meta)
    clf = OnnxClassifier(onnx_file)
    _, config = load_model(checkpoint)
    assert clf.config == config and clf.tta == "flip" and clf.input_size == 48
    assert clf.labels == tuple(config.labels)


@pytest.mark.parametrize("n", [1, 3, 70])
def test_batch_axis_is_dynamic(onnx_file, n):
    faces = np.random.default_rng(n).integers(0, 256, (n, 48, 48, 3), np.uint8)
    probs = OnnxClassifier(onnx_file, batch_size=64).predict_proba(faces)
    assert probs.shape == (n, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)


@pytest.mark.integration
@pytest.mark.parametrize("tta", ["none", "flip", "flip_shift", pytest.param("flip_crop", marks=pytest.mark.slow)])
def test_backends_agree_on_fer2013_publictest(checkpoint, publictest_faces, tmp_path, tta):
    model, config = load_model(checkpoint)
    torch_probs = classify(model, publictest_faces, config, tta=tta)
    onnx_probs = OnnxClassifier(export_onnx(checkpoint, tmp_path / "m.onnx", tta=tta)).predict_proba(publictest_faces)
    assert (torch_probs.argmax(1) == onnx_probs.argmax(1)).all()
    assert np.abs(torch_probs - onnx_probs).max() < 1e-3


@pytest.mark.integration
def test_backends_agree_on_a_model_trained_on_the_face_centre(publictest_faces, tmp_path):
    # 40-of-48 px crops (face_crop): the ONNX backend crops on the host as torch does, then needs no resize.
    ckpt = seeded_checkpoint(tmp_path / "centre.pt", input_size=40, face_crop=40 / 48, tta="flip")
    model, config = load_model(ckpt)
    onnx_clf = OnnxClassifier(export_onnx(ckpt, tmp_path / "centre.onnx"))
    assert onnx_clf.crop_size == config.crop_size == 48
    torch_probs = classify(model, publictest_faces, config)
    onnx_probs = onnx_clf.predict_proba(publictest_faces)
    assert (torch_probs.argmax(1) == onnx_probs.argmax(1)).all()
    assert np.abs(torch_probs - onnx_probs).max() < 1e-3
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "centre.onnx")).metadata_props}
    assert "the centre 0.8333 of each face crop" in meta["ferkit.input"]


@pytest.mark.integration
def test_recognizer_backends_agree_end_to_end(checkpoint, onnx_file, yunet_model, media_dir):
    images = [media_dir / "photos" / "multi_face.jpg", sample_image_path()]
    common = dict(detector="yunet", detector_model=yunet_model, device="cpu")
    a = Recognizer(model=checkpoint, backend="torch", **common).predict_batch(images)
    b = Recognizer(model=onnx_file, backend="onnx", **common).predict_batch(images)
    assert [[f.box for f in r] for r in a] == [[f.box for f in r] for r in b]
    for fa, fb in zip(sum(a, []), sum(b, [])):
        assert fa.emotion == fb.emotion
        assert np.allclose(list(fa.probs.values()), list(fb.probs.values()), atol=1e-3)


def test_checkpoints_are_exported_once_into_the_cache(checkpoint, monkeypatch):
    first = load_onnx_classifier(checkpoint)
    assert first.path.parent.name == "onnx" and first.tta == "flip"
    monkeypatch.setattr("ferkit.inference.export.export_onnx", lambda *a, **k: pytest.fail("exported twice"))
    assert load_onnx_classifier(checkpoint).path == first.path


def test_tta_of_an_onnx_file_is_fixed(onnx_file):
    with pytest.raises(ModelError, match="re-export with --tta none"):
        load_onnx_classifier(onnx_file, tta="none")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's legacy-exporter notice
def test_foreign_and_missing_onnx_files(tmp_path):
    plain = tmp_path / "plain.onnx"
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.zeros(1, 2),), str(plain), dynamo=False)
    with pytest.raises(ModelError, match="not a ferkit export"):
        OnnxClassifier(plain)
    with pytest.raises(ModelError, match="not found"):
        load_onnx_classifier(tmp_path / "missing.onnx")


def test_torch_backend_refuses_onnx_files(onnx_file):
    with pytest.raises(Exception, match="backend='onnx'"):
        Recognizer(model=onnx_file, detector="haar", backend="torch")


def test_auto_backend_runs_onnx_where_a_ready_file_exists(onnx_file, checkpoint, tmp_path, monkeypatch):
    import ferkit.inference.classifier
    import ferkit.inference.onnx_backend

    assert Recognizer(model=onnx_file, detector="haar").backend == "onnx"
    assert Recognizer(model=checkpoint, detector="haar").backend == "torch"
    import onnxruntime as ort

    # An .onnx file runs on ONNX Runtime whatever the device; asked for CUDA where that has no CUDA provider, it
    # says so instead of running on the CPU.
    with monkeypatch.context() as m:
        m.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
        with pytest.raises(ModelError, match="no CUDA provider"):
            Recognizer(model=onnx_file, detector="haar", device="cuda")
    # A shipped model name goes to ONNX Runtime only when its .onnx is shipped next to its .pt.
    (tmp_path / "mine.onnx").write_bytes(onnx_file.read_bytes())
    monkeypatch.setattr(ferkit.inference.classifier, "WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(ferkit.inference.onnx_backend, "WEIGHTS_DIR", tmp_path)
    assert ferkit.inference.classifier.resolve_backend("mine") == "onnx"
    assert ferkit.inference.classifier.resolve_backend("mine", device="cuda") == "torch"
    assert ferkit.inference.classifier.resolve_backend("other") == "torch"
    assert Recognizer(model="mine", detector="haar").backend == "onnx"


def test_cli_export(checkpoint, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", str(checkpoint), "--format", "onnx", "--out", str(out), "--tta", "none"]) == 0
    assert OnnxClassifier(out).tta == "none"
    assert f"wrote {out}" in capsys.readouterr().err


def test_onnx_backend_never_imports_torch(onnx_file):
    # The point of the ONNX backend for cold start: import ferkit + onnxruntime + OpenCV, not PyTorch.
    code = (
        "import sys; from ferkit import Recognizer; from ferkit.assets import sample_image_path; "
        f"r = Recognizer(model={str(onnx_file)!r}, backend='onnx', detector='haar'); "
        "assert len(r.predict(sample_image_path())) == 1; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_other_crop_sizes_are_resized(onnx_file):
    faces = np.random.default_rng(0).integers(0, 256, (2, 96, 96), np.uint8)  # gray, twice the input size
    probs = OnnxClassifier(onnx_file).predict_proba(faces)
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1, atol=1e-5)
