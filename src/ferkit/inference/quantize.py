"""INT8 static quantization of a ferkit ONNX graph with ONNX Runtime (needs the ``onnx`` package, as export does;
running the result needs onnxruntime only).

What is quantized is the network alone: a graph exported without TTA (``export_onnx(..., tta_on_host=True)``),
whose TTA views ``OnnxClassifier`` cuts on the host. Measured on the shipped ``default`` (2-core AMD EPYC with
AVX-512 VNNI, one thread; docs/experiments/inference-speed.md): with uint8 activations and int8 per-channel
weights (U8S8, the operand pair x86's VNNI and AVX2 integer kernels take) one view runs 2.3-3.3x faster than
float for a fraction of a point; with int8 activations (S8S8) it ran slower than float, and so did quantizing
a graph with its TTA inside, whose Pad/Slice/Concat keep quantize/dequantize pairs that never fuse.

The output keeps the source graph's ``ferkit.*`` metadata and adds ``ferkit.quantization`` (JSON: scheme,
calibration, the float graph's SHA-256), so the file still describes itself.
"""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ferkit.deps import require
from ferkit.errors import ModelError

if TYPE_CHECKING:
    import numpy as np

# Importing this module stays cheap (the CLI reads the names): numpy and onnx are imported when used.
#: ONNX Runtime calibration methods offered (MinMax is what the shipped graphs use).
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
QUANT_KEY = "quantization"  # the metadata entry, after ferkit's prefix


def quantize_onnx(source: str | Path, out: str | Path, calibration_faces: np.ndarray, *,
                  method: str = "minmax", batch_size: int = 64) -> Path:
    """Write an INT8 (QDQ, U8S8, per-channel 7-bit weights) copy of the bare ferkit graph ``source`` to ``out``,
    calibrated on ``calibration_faces`` (uint8 face crops, N x H x W or N x H x W x 3, as the Recognizer
    hands them to the classifier)."""
    require("onnx", for_what="INT8 quantization")
    import numpy as np
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)

    from ferkit.inference.export import INPUT_NAME, META_PREFIX, set_metadata
    from ferkit.inference.onnx_backend import OnnxClassifier
    from ferkit.paths import atomic_write, sha256_file

    if method not in CALIBRATION_METHODS:
        raise ModelError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIBRATION_METHODS)}")
    source, out = Path(source), Path(out)
    float_clf = OnnxClassifier(source, device="cpu")
    if float_clf.quantized:
        raise ModelError(f"{source} is already quantized; quantize the float export")
    if float_clf.graph_tta != "none":
        raise ModelError(f"{source} has tta={float_clf.graph_tta!r} inside the graph; quantize a graph exported "
                         f"without TTA (`ferkit export MODEL --int8` does), whose views run on the host")
    faces = np.asarray(calibration_faces)
    if len(faces) == 0:
        raise ModelError("no calibration faces given")
    inputs = float_clf.graph_input(faces)  # the graph's own input: the centre window, resized as at inference

    class Batches(CalibrationDataReader):
        def __init__(self):
            self._batches = iter(inputs[i:i + batch_size] for i in range(0, len(inputs), batch_size))

        def get_next(self):
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    # Weights in 7 bits (reduce_range): without VNNI, x86 multiplies uint8 by int8 with vpmaddubsw, which
    # saturates a pair's sum at 16 bits; 255 x 64 x 2 stays under it, so CPUs with and without VNNI should compute
    # the same integers (measured: on an AVX2-only CPU the shipped twins score what they score with VNNI, every TTA;
    # on VNNI, PublicTest accuracy within 0.1 point of 8 bits).
    # The head (the last linear layer onward: temperature, TTA mean, softmax) stays float: quantized, the logits
    # the host's TTA averages and the probabilities would come out in steps of 1/255, not summing to one.
    # So does the stem (the input's luma and normalisation, then the first convolution): its one or three input
    # channels give 9- or 27-term dot products that fill integer kernels badly, and quantizing the raw pixels
    # cost the shipped `default` 0.36 points without TTA (docs/experiments/inference-speed.md).
    float_proto = onnx.load(str(source))
    stem, head = float_ends(float_proto.graph)
    calibrate = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
                 "entropy": CalibrationMethod.Entropy}[method]
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        tmp_out = Path(tmp) / "int8.onnx"
        quantize_static(str(source), str(tmp_out), Batches(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        calibrate_method=calibrate, nodes_to_exclude=sorted(stem | head), reduce_range=True)
        proto = onnx.load(str(tmp_out))
    meta = {p.key: p.value for p in float_proto.metadata_props}
    meta[META_PREFIX + QUANT_KEY] = json.dumps({
        "scheme": "QDQ, int8 weights per output channel in 7 bits (reduce_range), uint8 activations (U8S8); "
                  "the stem (up to the first convolution) and the head (from the last linear layer on) in float",
        "calibration": method, "calibration_faces": int(len(faces)),
        "float_sha256": sha256_file(source),
    })
    set_metadata(proto, meta)
    with atomic_write(out) as f:
        f.write(proto.SerializeToString())
    return out


def float_ends(graph) -> tuple[set[str], set[str]]:
    """(stem, head): the names of the nodes of an ONNX ``graph`` that quantization leaves float.

    Read from the graph's wiring, so that an ensemble, several networks side by side in one graph, keeps every
    member's ends float: the stem is every node with no convolution upstream, plus the convolutions that see the
    input directly; the head is every linear layer with no linear layer downstream (a 1x1 convolution where the
    graph has no Gemm or MatMul), and everything downstream of one. A graph with one convolution keeps it int8.
    """
    nodes = [n for n in graph.node if n.op_type != "Constant"]
    linear_ops = {"Gemm", "MatMul"} if any(n.op_type in ("Gemm", "MatMul") for n in nodes) else {"Conv"}
    convs_above: dict[str, int] = {}  # tensor -> convolutions on its longest path from the input
    stem = set()
    for n in nodes:  # ONNX stores nodes in topological order
        depth = max((convs_above.get(t, 0) for t in n.input), default=0)
        if depth == 0:
            stem.add(n.name)
        for t in n.output:
            convs_above[t] = depth + (n.op_type == "Conv")
    if sum(n.op_type == "Conv" for n in nodes) < 2:
        stem = set()
    linear_below: set[str] = set()  # tensors that reach a linear layer further down
    last_linear = set()
    for n in reversed(nodes):
        reaches = any(t in linear_below for t in n.output)
        if n.op_type in linear_ops and not reaches:
            last_linear.add(n.name)
        if reaches or n.op_type in linear_ops:
            linear_below.update(n.input)
    head, head_tensors = set(), set()
    for n in nodes:
        if n.name in last_linear or any(t in head_tensors for t in n.input):
            head.add(n.name)
            head_tensors.update(n.output)
    return stem, head


@contextlib.contextmanager
def _quiet_root_logger():
    """ONNX Runtime's quantizer logs advice ("consider pre-processing") on the root logger; it is not the
    user's to act on (ONNX Runtime's own graph optimisations run when the session loads)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantization_of(clf) -> dict | None:
    """The ``ferkit.quantization`` record of an OnnxClassifier's graph (None for a float graph)."""
    raw = clf.metadata.get(QUANT_KEY)
    return json.loads(raw) if raw else None

