"""INT8 export: a bare graph that names its model's TTA, quantized with ONNX Runtime, still describes itself and
gives (nearly) the float graph's answers; every way to get it wrong is refused with one clear line."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.errors import ModelError
from ferkit.inference.onnx_backend import OnnxClassifier, load_onnx_classifier
from ferkit.data import sample_faces
from ferkit.errors import DataError
from ferkit.inference.quantize import quantization_of, quantize_onnx


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """A seeded 24 px fernet_s checkpoint whose own TTA is flip_shift: its graph with the TTA inside, the same
    model exported bare with the TTA on the host, and that one quantized."""
    from synthetic import seeded_checkpoint

    from ferkit.inference.export import export_onnx

    folder = tmp_path_factory.mktemp("int8")
    ckpt = seeded_checkpoint(folder / "net.pt", arch="fernet_s", input_size=24, tta="flip_shift", temperature=0.05)
    inside = export_onnx(ckpt, folder / "inside.onnx")
    bare = export_onnx(ckpt, folder / "bare.onnx", tta_on_host=True)
    calibration = np.random.default_rng(0).integers(0, 256, (96, 24, 24), np.uint8)
    int8 = quantize_onnx(bare, folder / "int8.onnx", calibration)
    return {"ckpt": ckpt, "inside": inside, "bare": bare, "int8": int8}


@pytest.fixture(scope="module")
def tiny_fer_zip(tmp_path_factory):
    """FER2013 laid out as Kaggle ships it: 14 training faces (48 px), 14 test faces."""
    from synthetic import standard_items, write_zip

    return write_zip(tmp_path_factory.mktemp("data") / "fer.zip", standard_items())


def faces(n=16, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, 24, 24), np.uint8)


def test_a_bare_export_runs_its_models_tta_on_the_host_by_default(exports):
    bare, inside = OnnxClassifier(exports["bare"], device="cpu"), OnnxClassifier(exports["inside"], device="cpu")
    assert (bare.graph_tta, bare.tta, bare.host_tta) == ("none", "flip_shift", "flip_shift")
    assert (inside.graph_tta, inside.host_tta) == ("flip_shift", "none")
    assert np.allclose(bare.predict_proba(faces()), inside.predict_proba(faces()), atol=1e-4)
    assert OnnxClassifier(exports["bare"], device="cpu", tta="none").tta == "none"  # still one argument away


def test_the_int8_graph_describes_itself_and_stays_close_to_float(exports):
    float_clf = OnnxClassifier(exports["bare"], device="cpu")
    int8 = OnnxClassifier(exports["int8"], device="cpu")
    assert int8.quantized and not float_clf.quantized
    assert "int8" in int8.description
    record = quantization_of(int8)
    assert record["calibration"] == "minmax" and record["calibration_faces"] == 96
    assert "U8S8" in record["scheme"]
    assert int8.tta == "flip_shift" and int8.labels == float_clf.labels  # the float graph's metadata is kept
    assert exports["int8"].stat().st_size < 0.5 * exports["bare"].stat().st_size  # int8 weights
    p_float, p_int8 = float_clf.predict_proba(faces(64)), int8.predict_proba(faces(64))
    assert np.allclose(p_int8.sum(1), 1.0, atol=1e-5)  # the head stays float: probabilities, not 1/255 steps
    assert not np.array_equal(p_float, p_int8)  # it really runs other arithmetic ...
    assert np.abs(p_float - p_int8).max() < 0.1  # ... close to the float answers
    assert (p_float.argmax(1) == p_int8.argmax(1)).mean() >= 0.8


def test_the_stem_and_the_head_stay_float_and_every_other_convolution_is_int8(exports):
    import onnx

    graph = onnx.load(str(exports["int8"])).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) > 2
    dequantized = [made_by.get(n.input[0]) == "DequantizeLinear" for n in convs]
    assert dequantized == [False] + [True] * (len(convs) - 1)  # the first convolution sees float pixels
    head = next(n for n in graph.node if n.op_type in ("Gemm", "MatMul"))
    assert made_by.get(head.input[1]) != "DequantizeLinear"  # float weights in the last linear layer
    assert "stem" in quantization_of(OnnxClassifier(exports["int8"], device="cpu"))["scheme"]


def test_an_ensemble_keeps_every_members_stem_and_head_float(tmp_path):
    """Two networks side by side in one graph: the quantizer reads the ends from the wiring, not from the first
    convolution and the last linear layer in the node list (which would quantize member 0's head and member 1's
    stem, and give probabilities in steps)."""
    import onnx
    from synthetic import seeded_checkpoint

    from ferkit.inference.export import export_onnx
    from ferkit.models.ensemble import combine_checkpoints

    members = [seeded_checkpoint(tmp_path / f"m{i}.pt", arch="fernet_s", seed=i, input_size=24, tta="flip")
               for i in range(2)]
    bare = export_onnx(combine_checkpoints(members, tmp_path / "ens.pt"), tmp_path / "ens.onnx", tta_on_host=True)
    int8 = quantize_onnx(bare, tmp_path / "ens-int8.onnx", faces(96, seed=0))
    graph = onnx.load(str(int8)).graph
    made_by = {out: n.op_type for n in graph.node for out in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    first = [n for n in convs if n.name.endswith("stem.0/Conv")]
    assert len(first) == 2 and all(made_by.get(n.input[0]) != "DequantizeLinear" for n in first)
    assert all(made_by.get(n.input[0]) == "DequantizeLinear" for n in convs if n not in first)
    gemms = [n for n in graph.node if n.op_type == "Gemm"]
    assert len(gemms) == 2 and all(made_by.get(n.input[1]) != "DequantizeLinear" for n in gemms)
    p_float = OnnxClassifier(bare, device="cpu").predict_proba(faces(32))
    p_int8 = OnnxClassifier(int8, device="cpu").predict_proba(faces(32))
    assert np.allclose(p_int8.sum(1), 1.0, atol=1e-5) and np.abs(p_float - p_int8).max() < 0.1


def test_only_a_bare_float_graph_is_quantized(exports, tmp_path):
    with pytest.raises(ModelError, match="tta='flip_shift' inside the graph"):
        quantize_onnx(exports["inside"], tmp_path / "x.onnx", faces())
    with pytest.raises(ModelError, match="already quantized"):
        quantize_onnx(exports["int8"], tmp_path / "x.onnx", faces())
    with pytest.raises(ModelError, match="no calibration faces"):
        quantize_onnx(exports["bare"], tmp_path / "x.onnx", faces()[:0])
    with pytest.raises(ModelError, match="unknown calibration method 'kl'"):
        quantize_onnx(exports["bare"], tmp_path / "x.onnx", faces(), method="kl")
    assert not (tmp_path / "x.onnx").exists()


def test_calibration_faces_are_a_seeded_sample_of_the_training_split(tiny_fer_zip):
    from ferkit.data import load_dataset

    train = load_dataset(tiny_fer_zip).split("train").images
    picked = sample_faces(tiny_fer_zip, 5)
    assert picked.shape == (5, *train.shape[1:])
    assert np.array_equal(picked, sample_faces(tiny_fer_zip, 5))  # seeded
    assert all(any(np.array_equal(p, t) for t in train) for p in picked)  # training faces only
    assert len(sample_faces(tiny_fer_zip, 10 ** 6)) == len(train)
    with pytest.raises(DataError, match="at least one face"):
        sample_faces(tiny_fer_zip, 0)


def test_ferkit_export_int8_writes_a_quantized_twin(exports, tiny_fer_zip, tmp_path, capsys):
    from ferkit.cli import main

    out = tmp_path / "net-int8.onnx"
    assert main(["export", str(exports["ckpt"]), "--int8", "--calibration", str(tiny_fer_zip),
                 "--calibration-faces", "8", "--out", str(out)]) == 0
    assert "tta=flip_shift on the host" in capsys.readouterr().err
    clf = load_onnx_classifier(str(out), device="cpu")
    assert clf.quantized and quantization_of(clf)["calibration_faces"] == 8 and clf.tta == "flip_shift"


@pytest.mark.parametrize("argv, message", [
    (["--int8"], "--int8 needs --calibration DATA"),
    (["--calibration", "x.zip"], "--calibration is for --int8"),
])
def test_ferkit_export_refuses_half_given_int8_options(exports, tmp_path, capsys, argv, message):
    from ferkit.cli import main

    out = tmp_path / "never.onnx"
    assert main(["export", str(exports["ckpt"]), *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
