"""ONNX export (needs torch and onnx); ``ferkit.inference.onnx_backend`` runs the result without torch.

The exported graph is the whole classifier, not just the network: it takes ``faces``, float32 N x S x S x 3 RGB
crops with pixel values 0-255 (float, so a crop resized on the host keeps torch's exact values), and runs the
same torch functions inference uses (``match_channels``, ``normalize``, ``tta_views``), the model, the
temperature and the softmax. Preprocessing therefore cannot drift between backends, and any ONNX consumer (a
browser, a phone) gets ferkit's numbers from the crop alone. Outputs: ``probs`` and
``logits`` (temperature-scaled, TTA-averaged), N x num_classes. The batch axis is dynamic.

The model's config is embedded as metadata (``ferkit.config`` JSON, ``ferkit.tta``, ...), so an .onnx file
describes itself and ``OnnxClassifier`` needs nothing else (and does not import torch).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.errors import ModelError
from ferkit.paths import atomic_write
from ferkit.transforms.views import check_tta

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "faces"
OUTPUT_NAMES = ("probs", "logits")
META_PREFIX = "ferkit."
# Metadata key of a bare graph's own TTA, which OnnxClassifier runs on the host (see export_onnx's tta_on_host).
HOST_TTA_KEY = "host_tta"


# ---------------------------------------------------------------------------------------------------------------
# Export (needs torch and onnx)


def _wrapper(model, config, tta: str):
    import torch
    import torch.nn as nn

    from ferkit.transforms.preprocess import match_channels, normalize
    from ferkit.transforms.views import tta_views

    def views_of(x: torch.Tensor) -> list[torch.Tensor]:
        return tta_views(x, tta, size=int(config.input_size))  # a static size: the tracer sees no shapes

    class ClassifierGraph(nn.Module):
        """float32 0-255 N x S x S x 3 RGB -> (probs, logits), the same ops as preprocess + inference.classify."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = faces.permute(0, 3, 1, 2).to(torch.float32)
            x = normalize(match_channels(x, config.in_chans), config)
            if tta == "adaptive":  # never traced (export_onnx cuts it on the host); what _verify compares with
                from ferkit.inference.torch_backend import predict_logits

                logits = predict_logits(self.model, x, tta, config.temperature) / config.temperature
                return torch.softmax(logits, dim=1), logits
            views = views_of(x)
            stacked = torch.cat(views) if len(views) > 1 else x
            logits = self.model(stacked).float().view(len(views), -1, config.num_classes).mean(0)
            logits = logits / config.temperature
            return torch.softmax(logits, dim=1), logits

    return ClassifierGraph().eval()


def export_onnx(model: Any = "default", out: str | Path | None = None, *, tta: str | None = None,
                tta_on_host: bool = False, opset: int = DEFAULT_OPSET, verify: bool = True) -> Path:
    """Export a shipped model name, checkpoint path or (nn.Module, ModelConfig) pair to ONNX.

    ``tta`` (default: the model's own) goes inside the graph, or with ``tta_on_host`` the graph holds one view
    and records ``tta`` as the mode ``OnnxClassifier`` runs by cutting the views on the host: the form INT8
    quantization needs (``ferkit.inference.quantize``). Writes atomically to ``out`` (default: ``<checkpoint
    stem>.onnx`` in the current folder) and, with ``verify``, checks ONNX Runtime against PyTorch's TTA on a
    random batch before returning the path.
    """
    import onnx
    import torch

    from ferkit.models.checkpoint import checkpoint_digest, load_model, spec_stem

    source: dict[str, str] = {}
    if isinstance(model, tuple):
        net, config = model
        net.eval()
        source["source"] = type(net).__name__
    else:
        net, config = load_model(model, device="cpu")
        source = {"source": str(model), "source_sha256": checkpoint_digest(model)}
        out = out or Path.cwd() / f"{spec_stem(model)}.onnx"
    if out is None:
        raise ModelError("give out= when exporting an in-memory model")
    tta = config.tta if tta is None else tta
    check_tta(tta)
    tta_on_host = tta_on_host or tta == "adaptive"  # its second stage depends on the first: no static graph
    out = Path(out)
    graph_tta = "none" if tta_on_host else tta
    graph = _wrapper(net, config, graph_tta)
    size = int(config.input_size)
    # Batch 2: a batch of 1 can let an exporter specialise the batch axis to a constant.
    sample = torch.randint(0, 256, (2, size, size, 3), generator=torch.Generator().manual_seed(0)).float()
    proto = onnx.load_from_string(_to_onnx_bytes(graph, sample, opset))

    from ferkit import __version__

    meta = {
        "config": json.dumps(config.to_dict()),
        "tta": graph_tta,
        **({HOST_TTA_KEY: tta} if tta_on_host else {}),
        "input": f"{INPUT_NAME}: float32 N x {size} x {size} x 3 RGB face crops, pixel values 0-255 (square, "
                 f"eyes level)" + ("" if config.face_crop >= 1 else
                                   f"; the centre {config.face_crop:.4g} of each face crop, at {size} px"),
        "outputs": "probs, logits: float32 N x num_classes (temperature-scaled, TTA-averaged)" if not tta_on_host
                   else f"probs, logits: float32 N x num_classes (temperature-scaled) of one view; the model's "
                        f"TTA ({tta}) averages the logits of its views (ferkit.inference.onnx_backend.host_views)",
        "labels": json.dumps(list(config.labels)),
        "version": __version__,
        **source,
    }
    set_metadata(proto, {META_PREFIX + k: v for k, v in meta.items()})
    proto.producer_name, proto.producer_version = "ferkit", __version__
    proto.doc_string = f"ferkit {config.arch} expression classifier ({', '.join(config.labels)})"
    with atomic_write(out) as f:
        f.write(proto.SerializeToString())
    if verify:  # against torch's own TTA, so host-cut views are checked too
        _verify(out, _wrapper(net, config, tta) if tta_on_host else graph, config)
    log.debug("exported %s to %s (%.1f MB)", meta["source"], out, out.stat().st_size / 1e6)
    return out


def set_metadata(proto, entries: dict[str, str]) -> None:
    """Make ``entries`` (full keys) the whole metadata of an ONNX ModelProto."""
    del proto.metadata_props[:]
    for key, value in entries.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def update_metadata(path: str | Path, entries: dict[str, str]) -> None:
    """Add or replace ``ferkit.*`` metadata entries of an .onnx file in place (atomically)."""
    import onnx

    proto = onnx.load(str(path))
    meta = {p.key: p.value for p in proto.metadata_props}
    set_metadata(proto, {**meta, **{META_PREFIX + k: v for k, v in entries.items()}})
    with atomic_write(Path(path)) as f:
        f.write(proto.SerializeToString())


def _to_onnx_bytes(graph, sample, opset: int) -> bytes:
    """torch.onnx.export: the dynamo exporter where onnxscript is installed, else the TorchScript one."""
    import torch

    buf = io.BytesIO()
    if importlib.util.find_spec("onnxscript") is not None:
        try:
            batch = torch.export.Dim("batch", min=1)
            # The exporter reports progress on stdout; keep stdout clean for `ferkit predict --json`.
            with contextlib.redirect_stdout(sys.stderr):
                prog = torch.onnx.export(graph, (sample,), dynamo=True, opset_version=max(opset, 18),
                                         input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                         dynamic_shapes=({0: batch},), verbose=False)
            prog.save(buf)
            return buf.getvalue()
        except Exception as exc:  # the dynamo exporter still rejects some graphs; the legacy one is the fallback
            log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", exc)
            buf = io.BytesIO()
    with warnings.catch_warnings():
        # torch >= 2.9 warns that the TorchScript exporter is legacy; it is what works without onnxscript.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        # Tracing turns config values (mean, std, channel checks) into constants, which is what we want.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            graph, (sample,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), dynamic_axes={n: {0: "batch"} for n in (INPUT_NAME, *OUTPUT_NAMES)},
        )
    return buf.getvalue()


def _verify(path: Path, graph, config, tol: float = 1e-4) -> None:
    import torch

    from ferkit.transforms.preprocess import centre_crop

    rng = np.random.default_rng(0)
    # Crops as the Recognizer makes them: the classifier cuts their centre, the graph's input, on the host.
    side = config.crop_size
    faces = rng.integers(0, 256, (5, side, side, 3), dtype=np.uint8)  # 5: not the batch size exported with
    with torch.inference_mode():
        centre = centre_crop(torch.from_numpy(faces).permute(0, 3, 1, 2), config.face_crop).permute(0, 2, 3, 1)
        expected = graph(centre.float())[0].numpy()
    from ferkit.inference.onnx_backend import OnnxClassifier

    got = OnnxClassifier(path).predict_proba(faces)
    err = float(np.abs(got - expected).max())
    if not err < tol:
        raise ModelError(f"{path}: ONNX Runtime disagrees with PyTorch (max |dp| = {err:.2g}); export is broken")
    log.debug("verified %s: max |dp| vs PyTorch = %.2g", path, err)
