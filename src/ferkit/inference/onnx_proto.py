"""ONNX files at the protobuf wire level, for the base install, which has onnxruntime but not the ``onnx``
package: free a graph's declared input and output shapes, and read a file's metadata without building an
inference session.

YuNet's file declares a fixed 1 x 3 x 640 x 640 input, and ONNX Runtime refuses any other size, although every
layer of the network takes any size that is a multiple of 32 (its reshapes use -1). OpenCV's ``FaceDetectorYN``
ignores the declaration; ONNX Runtime needs it gone. ``free_io_shapes`` drops only the shape fields (and the
inferred ``value_info``, which holds 640-based intermediate shapes); every other byte is copied as it is.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

# Field numbers of onnx.proto3 (ModelProto.graph and .metadata_props; StringStringEntryProto.key/value;
# GraphProto.input/output/value_info; ValueInfoProto.type; TypeProto.tensor_type; TypeProto.Tensor.shape).
_MODEL_GRAPH, _MODEL_METADATA, _ENTRY_KEY, _ENTRY_VALUE = 7, 14, 1, 2
_GRAPH_INPUT, _GRAPH_OUTPUT, _GRAPH_VALUE_INFO = 11, 12, 13
_VALUE_INFO_TYPE, _TYPE_TENSOR, _TENSOR_SHAPE = 2, 1, 2
_LENGTH_DELIMITED = 2

Rule = Callable[[bytes], bytes] | None  # a field's new body, or None to drop the field


def free_io_shapes(model: bytes) -> bytes:
    """``model`` (a serialized ModelProto) with the shapes of its graph's inputs and outputs left undeclared
    and its ``value_info`` removed. ValueError when the bytes are not a well-formed protobuf."""
    tensor = _editor({_TENSOR_SHAPE: None})
    value_info = _editor({_VALUE_INFO_TYPE: _editor({_TYPE_TENSOR: tensor})})
    graph = _editor({_GRAPH_INPUT: value_info, _GRAPH_OUTPUT: value_info, _GRAPH_VALUE_INFO: None})
    edited = _edit(model, {_MODEL_GRAPH: graph})
    if edited == model:
        raise ValueError("no graph input or output shapes found: not an ONNX model")
    return edited


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX file at ``path`` (what onnxruntime's ``custom_metadata_map`` gives),
    without loading the graph into a session. ValueError when the file is not a well-formed protobuf."""
    meta = {}
    for number, wire, _, body in _fields(Path(path).read_bytes()):
        if number == _MODEL_METADATA and wire == _LENGTH_DELIMITED:
            entry = {n: b.decode("utf-8") for n, w, _, b in _fields(body) if w == _LENGTH_DELIMITED}
            meta[entry.get(_ENTRY_KEY, "")] = entry.get(_ENTRY_VALUE, "")
    return meta


def _editor(rules: dict[int, Rule]) -> Callable[[bytes], bytes]:
    return lambda body: _edit(body, rules)


def _edit(message: bytes, rules: dict[int, Rule]) -> bytes:
    """``message`` with each length-delimited field named in ``rules`` dropped or rewritten."""
    out = bytearray()
    for number, wire, raw, body in _fields(message):
        if number in rules and wire == _LENGTH_DELIMITED:
            rule = rules[number]
            if rule is not None:
                new = rule(body)
                out += _varint((number << 3) | _LENGTH_DELIMITED) + _varint(len(new)) + new
            continue
        out += raw
    return bytes(out)


def _fields(message: bytes) -> Iterator[tuple[int, int, bytes, bytes]]:
    """(field number, wire type, the field's bytes as stored, its body if length-delimited)."""
    i, n = 0, len(message)
    while i < n:
        start = i
        key, i = _read_varint(message, i)
        number, wire = key >> 3, key & 7
        body = b""
        if wire == 0:
            _, i = _read_varint(message, i)
        elif wire == 1:
            i += 8
        elif wire == _LENGTH_DELIMITED:
            size, i = _read_varint(message, i)
            body = message[i:i + size]
            i += size
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {start}")
        if i > n or number == 0:
            raise ValueError(f"malformed protobuf field at byte {start}")
        yield number, wire, message[start:i], body


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise ValueError("truncated protobuf varint")
        byte = buf[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)
