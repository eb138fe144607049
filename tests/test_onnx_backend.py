"""The ONNX Runtime backend: settings from the file's metadata, input checks, and the host-side resize that must
give the pixels torch gives.

Most tests run a probe: a hand-built ONNX graph whose "probabilities" are its input pixels, flattened, so a
test sees exactly what the backend feeds the graph."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from onnx import TensorProto, helper

from ferkit.errors import DataError, ModelError
from ferkit.inference.export import INPUT_NAME, META_PREFIX, OUTPUT_NAMES
from ferkit.inference.onnx_backend import OnnxClassifier, load_onnx_classifier, resize_matrix


def probe_onnx(path: Path, size: int = 8, face_crop: float = 1.0, metadata: bool = True) -> Path:
    """An N x size x size x 3 float graph whose output "probs" is its input reshaped to N x (size * size * 3)."""
    k = size * size * 3
    graph = helper.make_graph(
        [helper.make_node("Reshape", [INPUT_NAME, "shape"], [OUTPUT_NAMES[0]])],
        "probe",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["n", size, size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAMES[0], TensorProto.FLOAT, ["n", k])],
        [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, k])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # one every onnxruntime release since 1.10 reads
    if metadata:
        config = dict(arch="probe", input_size=size, face_crop=face_crop, crop_margin=0.1,
                      labels=[f"p{i}" for i in range(k)])
        helper.set_model_props(model, {META_PREFIX + "config": json.dumps(config), META_PREFIX + "tta": "flip"})
    onnx.save(model, str(path))
    return path


def fed(clf: OnnxClassifier, faces: np.ndarray) -> np.ndarray:
    """What the probe's graph received, as N x H x W x 3."""
    s = clf.input_size
    return clf.predict_proba(faces).reshape(len(faces), s, s, 3)


def torch_resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    x = torch.from_numpy(img.astype(np.float32))[None, None]
    return F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> OnnxClassifier:
    # An 8 px model trained on the centre 80% of its crops: it wants 10 px crops.
    return OnnxClassifier(probe_onnx(tmp_path_factory.mktemp("onnx") / "probe.onnx", 8, 0.8), device="cpu")


@pytest.mark.parametrize("n_in, n_out", [(48, 40), (48, 24), (40, 13), (17, 5), (40, 48), (5, 17), (12, 12)])
def test_resize_matrix_matches_torch_antialiased_bilinear(n_in, n_out):
    m = resize_matrix(n_in, n_out)
    assert m.shape == (n_out, n_in) and m.dtype == np.float32
    assert np.allclose(m.sum(1), 1.0, atol=1e-6) and (m >= 0).all()
    img = np.random.default_rng(n_in * 100 + n_out).uniform(0, 255, (n_in, n_in + 3))
    cols = resize_matrix(n_in + 3, n_out + 2)  # a different size per axis: both are checked
    assert np.allclose(m @ img @ cols.T, torch_resize(img, n_out, n_out + 2), atol=2e-3)


def test_resize_matrix_to_the_same_size_is_the_identity():
    assert np.array_equal(resize_matrix(9, 9), np.eye(9, dtype=np.float32))


def test_settings_come_from_the_file(probe):
    assert (probe.input_size, probe.face_crop, probe.crop_size, probe.crop_margin) == (8, 0.8, 10, 0.1)
    assert probe.tta == "flip" and probe.backend == "onnx" and len(probe.labels) == 8 * 8 * 3
    assert probe.description == "probe.onnx (probe, onnxruntime CPU, tta=flip)"
    assert probe.config.input_size == 8 and probe.config.face_crop == 0.8


def test_crops_of_the_crop_size_are_cut_to_their_centre(probe):
    faces = np.random.default_rng(0).integers(0, 256, (3, 10, 10, 3), np.uint8)
    assert np.array_equal(fed(probe, faces), faces[:, 1:9, 1:9].astype(np.float32))


def test_grayscale_crops_are_fed_as_equal_channels(probe):
    gray = np.random.default_rng(1).integers(0, 256, (2, 10, 10), np.uint8)
    x = fed(probe, gray)
    assert np.array_equal(x, np.repeat(gray[:, 1:9, 1:9, None], 3, axis=3).astype(np.float32))
    assert np.array_equal(probe.predict_proba(gray), probe.predict_proba(np.repeat(gray[..., None], 3, axis=3)))


def test_other_crop_sizes_get_torchs_resize_of_their_centre(probe):
    faces = np.random.default_rng(2).integers(0, 256, (2, 20, 20, 3), np.uint8)
    x = fed(probe, faces)
    for i in range(2):
        for c in range(3):
            assert np.allclose(x[i, ..., c], torch_resize(faces[i, 2:18, 2:18, c], 8, 8), atol=2e-3)


def test_batching_changes_nothing(probe):
    faces = np.random.default_rng(3).integers(0, 256, (7, 10, 10, 3), np.uint8)
    small = OnnxClassifier(probe.path, device="cpu", batch_size=3)
    assert np.array_equal(small.predict_proba(faces), probe.predict_proba(faces))


@pytest.mark.parametrize("faces, message", [
    (np.zeros((2, 10, 10, 3), np.float32), "expected uint8 face crops, got float32"),
    (np.zeros((2, 10, 10, 4), np.uint8), r"expected N x H x W or N x H x W x 3 faces, got shape \(2, 10, 10, 4\)"),
    (np.zeros((10, 10), np.uint8), r"got shape \(10, 10\)"),
])
def test_bad_inputs_are_refused(probe, faces, message):
    with pytest.raises(DataError, match=message):
        probe.predict_proba(faces)


def test_an_onnx_file_without_ferkit_metadata_is_refused(tmp_path):
    path = probe_onnx(tmp_path / "plain.onnx", metadata=False)
    with pytest.raises(ModelError, match=r"plain.onnx is not a ferkit export \(no ferkit.config metadata\); "
                                         r"export it with `ferkit export MODEL --format onnx`"):
        OnnxClassifier(path)


def test_a_corrupt_or_missing_file_is_a_model_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="cannot load ONNX model .*bad.onnx"):
        OnnxClassifier(bad)
    with pytest.raises(ModelError, match="ONNX model '.*missing.onnx' not found; create one with `ferkit export"):
        load_onnx_classifier(str(tmp_path / "missing.onnx"))


def test_the_tta_of_an_exported_file_cannot_be_changed_at_load(tmp_path):
    path = probe_onnx(tmp_path / "probe.onnx")
    assert load_onnx_classifier(path, tta="flip", device="cpu").tta == "flip"
    with pytest.raises(ModelError, match="exported with tta='flip'; re-export with --tta none"):
        load_onnx_classifier(path, tta="none", device="cpu")


def test_shipped_models_load_their_shipped_onnx():
    from ferkit.paths import WEIGHTS_DIR

    clf = load_onnx_classifier("fast", device="cpu")
    assert clf.path == WEIGHTS_DIR / "fast.onnx" and clf.config_dict["arch"] == "fernet_s"
    probs = clf.predict_proba(np.full((2, 40, 40), 128, np.uint8))
    assert probs.shape == (2, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def fernet_exports(tmp_path_factory):
    """A seeded 24 px fernet_s checkpoint and its ONNX exports, bare and with each TTA inside the graph."""
    from synthetic import seeded_checkpoint

    from ferkit.inference.export import export_onnx
    from ferkit.transforms.views import TTA_MODES

    folder = tmp_path_factory.mktemp("host_tta")
    ckpt = seeded_checkpoint(folder / "net.pt", arch="fernet_s", input_size=24, tta="none",
                              temperature=0.02)  # sharp: an untrained net's near-uniform outputs, spread
    return ckpt, {tta: export_onnx(ckpt, folder / f"net-{tta}.onnx", tta=tta) for tta in TTA_MODES}


@pytest.mark.parametrize("tta", ["flip", "flip_shift", "flip_crop"])
def test_host_side_tta_on_a_bare_graph_gives_what_the_tta_graph_gives(fernet_exports, tta):
    _, exports = fernet_exports
    faces = np.random.default_rng(1).integers(0, 256, (5, 30, 30, 3), np.uint8)  # resized to 24 on the host
    host = OnnxClassifier(exports["none"], device="cpu", tta=tta, batch_size=2)
    inside = OnnxClassifier(exports[tta], device="cpu")
    assert (host.tta, host.host_tta, inside.host_tta) == (tta, tta, "none")
    plain = OnnxClassifier(exports["none"], device="cpu").predict_proba(faces)
    expected = inside.predict_proba(faces)
    assert not np.allclose(plain, expected, atol=1e-3)  # the views matter for this seeded net ...
    assert np.allclose(host.predict_proba(faces), expected, atol=1e-4)  # ... and the host cuts the same ones


def test_a_shipped_model_without_tta_inside_runs_any_tta_on_the_host(fernet_exports, tmp_path, monkeypatch):
    import ferkit.inference.onnx_backend as backend

    ckpt, exports = fernet_exports
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "mini.onnx").write_bytes(exports["none"].read_bytes())
    monkeypatch.setattr(backend, "WEIGHTS_DIR", weights)
    monkeypatch.setattr(backend, "_cached_export", lambda *a: pytest.fail("re-exported a shipped bare graph"))
    clf = load_onnx_classifier("mini", tta="flip_shift", device="cpu")
    assert clf.path == weights / "mini.onnx" and clf.tta == "flip_shift" and clf.host_tta == "flip_shift"
    assert load_onnx_classifier("mini", device="cpu").tta == "none"


def test_a_checkpoint_exported_once_runs_another_tta_later_without_pytorch(fernet_exports, tmp_path, monkeypatch):
    import ferkit.inference.onnx_backend as backend

    ckpt, _ = fernet_exports
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    first = load_onnx_classifier(str(ckpt), tta="flip", device="cpu")  # exported here, without TTA inside
    assert first.graph_tta == "none" and first.tta == "flip"

    def no_torch(*names, **kw):
        assert "torch" not in names, "asked for PyTorch"
    monkeypatch.setattr(backend, "require", no_torch)
    again = load_onnx_classifier(str(ckpt), tta="flip_shift", device="cpu")
    assert again.path == first.path and again.tta == "flip_shift"


def test_adaptive_tta_runs_on_the_host_and_gives_what_torch_gives(fernet_exports, monkeypatch):
    import ferkit.transforms.views as views
    from ferkit.inference.torch_backend import classify
    from ferkit.models.checkpoint import load_model

    ckpt, exports = fernet_exports
    adaptive = OnnxClassifier(exports["adaptive"], device="cpu", batch_size=3)
    # No static graph can hold it: the export is the bare network, with adaptive as its host TTA.
    assert (adaptive.graph_tta, adaptive.tta, adaptive.host_tta) == ("none", "adaptive", "adaptive")
    faces = np.random.default_rng(2).integers(0, 256, (12, 24, 24, 3), np.uint8)
    flip = OnnxClassifier(exports["none"], device="cpu", tta="flip").predict_proba(faces)
    full = OnnxClassifier(exports["none"], device="cpu", tta="flip_shift").predict_proba(faces)
    threshold = float(np.sort(flip.max(1))[5:7].mean())  # between two faces' confidences: both stages run
    monkeypatch.setattr(views, "ADAPTIVE_CONFIDENCE", threshold)
    again = flip.max(1) < threshold
    assert 0 < again.sum() < len(faces)
    got = adaptive.predict_proba(faces)
    assert np.allclose(got[~again], flip[~again], atol=1e-6) and np.allclose(got[again], full[again], atol=1e-5)
    model, config = load_model(ckpt)
    assert np.allclose(classify(model, faces, config, tta="adaptive"), got, atol=1e-4)


def test_host_views_refuse_adaptive():
    from ferkit.errors import ModelError
    from ferkit.inference.onnx_backend import host_views

    with pytest.raises(ModelError, match="adaptive TTA has no fixed views"):
        host_views(np.zeros((1, 8, 8, 3), np.float32), "adaptive")


def test_an_explicit_cuda_device_without_a_cuda_provider_is_one_clear_error(monkeypatch):
    import onnxruntime as ort

    from ferkit.inference.onnx_backend import OnnxClassifier
    from ferkit.paths import WEIGHTS_DIR

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ModelError, match="device 'cuda': this onnxruntime has no CUDA provider .*has: CPU"):
        OnnxClassifier(WEIGHTS_DIR / "fast.onnx", device="cuda")
    with pytest.raises(ModelError, match="device 'mps': the ONNX Runtime backend runs on cpu or cuda"):
        OnnxClassifier(WEIGHTS_DIR / "fast.onnx", device="mps")
    assert OnnxClassifier(WEIGHTS_DIR / "fast.onnx", device="auto").providers == ["CPUExecutionProvider"]
