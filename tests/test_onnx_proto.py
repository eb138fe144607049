"""ONNX files at the protobuf wire level (no ``onnx`` package at run time; the tests build their graphs with
it): freeing the declared input and output shapes, reading the metadata."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.inference.onnx_proto import free_io_shapes, read_metadata

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def conv_model(side: int = 32) -> bytes:
    """A 3x3 convolution (padding 1) then a reshape to 1 x -1 x 4: sizes declared for one input side only."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    shape = numpy_helper.from_array(np.array([1, -1, 4], np.int64), "shape")
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["out"])]
    graph = helper.make_graph(nodes, "g",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, side, side])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, side * side, 4])],
                              initializer=[w, shape],
                              value_info=[helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 4, side, side])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def session(model: bytes):
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def test_freed_model_takes_other_sizes_and_computes_the_same():
    original = conv_model()
    x32 = np.random.default_rng(1).normal(size=(1, 3, 32, 32)).astype(np.float32)
    x64x96 = np.random.default_rng(2).normal(size=(1, 3, 64, 96)).astype(np.float32)
    with pytest.raises(Exception, match="[Ii]nvalid dimensions"):
        session(original).run(None, {"input": x64x96})

    freed = session(free_io_shapes(original))
    assert np.array_equal(freed.run(None, {"input": x32})[0], session(original).run(None, {"input": x32})[0])
    out = freed.run(None, {"input": x64x96})[0]
    assert out.shape == (1, 64 * 96, 4)
    # The same convolution, declared for 64 x 96 from the start, gives the same numbers.
    model = onnx.load_from_string(conv_model())
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim[2:], (64, 96)):
        dim.dim_value = value
    del model.graph.output[0].type.tensor_type.shape.dim[:]
    del model.graph.value_info[:]
    assert np.array_equal(out, session(model.SerializeToString()).run(None, {"input": x64x96})[0])


def test_only_the_shapes_change():
    before, after = onnx.load_from_string(conv_model()), onnx.load_from_string(free_io_shapes(conv_model()))
    assert not after.graph.value_info and not after.graph.input[0].type.tensor_type.HasField("shape")
    assert after.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert [n.name for n in after.graph.output] == ["out"]
    assert after.graph.node == before.graph.node and after.graph.initializer == before.graph.initializer
    assert after.opset_import == before.opset_import and after.ir_version == before.ir_version


@pytest.mark.parametrize("data, message", [
    (b"\x3a\xff", "truncated protobuf varint"),          # graph field whose length never ends
    (b"\x3a\x10abc", "malformed protobuf field"),          # graph field longer than the file
    (b"\x0f", "unsupported protobuf wire type 7"),
    (b"\x08\x06", "not an ONNX model"),                  # a valid message with no graph
])
def test_bytes_that_are_not_an_onnx_model(data, message):
    with pytest.raises(ValueError, match=message):
        free_io_shapes(data)


def test_metadata_is_read_as_onnxruntime_reads_it(tmp_path):
    model = onnx.load_from_string(conv_model())
    helper.set_model_props(model, {"ferkit.tta": "flip", "note": "ünïcode, 2 views", "empty": ""})
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    expected = session(path.read_bytes()).get_modelmeta().custom_metadata_map
    assert read_metadata(path) == expected == {"ferkit.tta": "flip", "note": "ünïcode, 2 views", "empty": ""}


def test_metadata_of_the_shipped_twins():
    from ferkit.paths import WEIGHTS_DIR

    for path in sorted(WEIGHTS_DIR.glob("*.onnx")):
        meta = read_metadata(path)
        assert meta == session(path.read_bytes()).get_modelmeta().custom_metadata_map
        assert "ferkit.config" in meta


def test_metadata_of_a_file_that_is_not_onnx(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"\x0f")
    with pytest.raises(ValueError, match="wire type 7"):
        read_metadata(tmp_path / "bad.onnx")
