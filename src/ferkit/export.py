"""ONNX export and the ONNX Runtime backend.

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
from ferkit.paths import WEIGHTS_DIR, atomic_write
from ferkit.views import centre_window, check_tta, crop_side

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "faces"
OUTPUT_NAMES = ("probs", "logits")
META_PREFIX = "ferkit."


# ---------------------------------------------------------------------------------------------------------------
# Export (needs torch and onnx)


def _wrapper(model, config, tta: str):
    import torch
    import torch.nn as nn

    from ferkit.inference import tta_views
    from ferkit.preprocess import match_channels, normalize

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
            views = views_of(x)
            stacked = torch.cat(views) if len(views) > 1 else x
            logits = self.model(stacked).float().view(len(views), -1, config.num_classes).mean(0)
            logits = logits / config.temperature
            return torch.softmax(logits, dim=1), logits

    return ClassifierGraph().eval()


def export_onnx(model: Any = "default", out: str | Path | None = None, *, tta: str | None = None,
                opset: int = DEFAULT_OPSET, verify: bool = True) -> Path:
    """Export a shipped model name, checkpoint path or (nn.Module, ModelConfig) pair to ONNX.

    Writes atomically to ``out`` (default: ``<checkpoint stem>.onnx`` in the current folder) and, with
    ``verify``, checks ONNX Runtime against PyTorch on a random batch before returning the path.
    """
    import onnx
    import torch

    from ferkit.checkpoint import load_model, resolve_checkpoint

    source: dict[str, str] = {}
    if isinstance(model, tuple):
        net, config = model
        net.eval()
        source["source"] = type(net).__name__
    else:
        path = resolve_checkpoint(model)
        net, config = load_model(path, device="cpu")
        source = {"source": str(model), "source_sha256": _sha256(path)}
        out = out or Path.cwd() / f"{Path(str(model)).stem}.onnx"
    if out is None:
        raise ValueError("give out= when exporting an in-memory model")
    tta = config.tta if tta is None else tta
    check_tta(tta)
    out = Path(out)
    graph = _wrapper(net, config, tta)
    size = int(config.input_size)
    # Batch 2: a batch of 1 can let an exporter specialise the batch axis to a constant.
    sample = torch.randint(0, 256, (2, size, size, 3), generator=torch.Generator().manual_seed(0)).float()
    proto = onnx.load_from_string(_to_onnx_bytes(graph, sample, opset))

    from ferkit import __version__

    meta = {
        "config": json.dumps(config.to_dict()),
        "tta": tta,
        "input": f"{INPUT_NAME}: float32 N x {size} x {size} x 3 RGB face crops, pixel values 0-255 (square, "
                 f"eyes level)" + ("" if config.face_crop >= 1 else
                                   f"; the centre {config.face_crop:.4g} of each face crop, at {size} px"),
        "outputs": "probs, logits: float32 N x num_classes (temperature-scaled, TTA-averaged)",
        "labels": json.dumps(list(config.labels)),
        "version": __version__,
        **source,
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META_PREFIX + key, value
    proto.producer_name, proto.producer_version = "ferkit", __version__
    proto.doc_string = f"ferkit {config.arch} expression classifier ({', '.join(config.labels)})"
    with atomic_write(out) as f:
        f.write(proto.SerializeToString())
    if verify:
        _verify(out, graph, config)
    log.debug("exported %s to %s (%.1f MB)", meta["source"], out, out.stat().st_size / 1e6)
    return out


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

    from ferkit.preprocess import centre_crop

    rng = np.random.default_rng(0)
    # Crops as the Recognizer makes them: the classifier cuts their centre, the graph's input, on the host.
    side = config.crop_size
    faces = rng.integers(0, 256, (5, side, side, 3), dtype=np.uint8)  # 5: not the batch size exported with
    with torch.inference_mode():
        centre = centre_crop(torch.from_numpy(faces).permute(0, 3, 1, 2), config.face_crop).permute(0, 2, 3, 1)
        expected = graph(centre.float())[0].numpy()
    got = OnnxClassifier(path).predict_proba(faces)
    err = float(np.abs(got - expected).max())
    if not err < tol:
        raise ModelError(f"{path}: ONNX Runtime disagrees with PyTorch (max |dp| = {err:.2g}); export is broken")
    log.debug("verified %s: max |dp| vs PyTorch = %.2g", path, err)


# ---------------------------------------------------------------------------------------------------------------
# The ONNX Runtime backend (needs only onnxruntime and numpy)


class OnnxClassifier:
    """Runs an exported ferkit .onnx file on ONNX Runtime; settings come from the file's own metadata."""

    backend = "onnx"

    def __init__(self, path: str | Path, *, device: str = "auto", batch_size: int = 64, threads: int | None = None):
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        wants_gpu = device == "auto" or str(device).startswith("cuda")
        if wants_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for missing/corrupt files
            raise ModelError(f"cannot load ONNX model {self.path}: {exc}") from exc
        meta = self.session.get_modelmeta().custom_metadata_map
        if META_PREFIX + "config" not in meta:
            raise ModelError(f"{self.path} is not a ferkit export (no {META_PREFIX}config metadata); "
                             f"export it with `ferkit export MODEL --format onnx`")
        self.config_dict: dict[str, Any] = json.loads(meta[META_PREFIX + "config"])
        self.metadata = {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}
        self.tta = meta.get(META_PREFIX + "tta", "none")
        self.labels = tuple(self.config_dict["labels"])
        self.input_size = int(self.config_dict["input_size"])
        self.face_crop = float(self.config_dict.get("face_crop", 1.0))
        self.crop_size = crop_side(self.input_size, self.face_crop)
        self.crop_margin = float(self.config_dict.get("crop_margin", 0.0))
        self.batch_size = batch_size
        self.providers = self.session.get_providers()
        self.description = (f"{self.path.name} ({self.config_dict['arch']}, onnxruntime "
                            f"{self.providers[0].replace('ExecutionProvider', '')}, tta={self.tta})")

    @property
    def config(self):
        """The ModelConfig (imports torch via ferkit.checkpoint; the backend itself does not need it)."""
        from ferkit.checkpoint import ModelConfig

        return ModelConfig.from_dict(self.config_dict)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        faces = self._as_input(np.asarray(faces))
        out = np.empty((len(faces), len(self.labels)), dtype=np.float32)
        for start in range(0, len(faces), self.batch_size):
            batch = faces[start:start + self.batch_size]
            out[start:start + len(batch)] = self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: batch})[0]
        return out

    def _as_input(self, faces: np.ndarray) -> np.ndarray:
        if faces.dtype != np.uint8:
            raise ValueError(f"expected uint8 face crops, got {faces.dtype}")
        if faces.ndim == 3:  # grayscale crops: RGB with equal channels has the same luma
            faces = np.repeat(faces[..., None], 3, axis=3)
        if faces.ndim != 4 or faces.shape[3] != 3:
            raise ValueError(f"expected N x H x W or N x H x W x 3 faces, got shape {faces.shape}")
        rows, cols = centre_window(faces.shape[1], faces.shape[2], self.face_crop)  # what the model was trained on
        faces = faces[:, rows, cols]
        faces = faces.astype(np.float32)
        s = self.input_size
        if faces.shape[1:3] != (s, s):
            # The graph has a fixed input size. The Recognizer always crops to land on it; other sizes (e.g.
            # 48 px FER2013 faces for a 40 px model) get the very resize torch inference and training use.
            rows, cols = resize_matrix(faces.shape[1], s), resize_matrix(faces.shape[2], s)
            faces = np.einsum("oh,nhwc,pw->nopc", rows, faces, cols, optimize=True)
        return np.ascontiguousarray(faces, dtype=np.float32)


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in weights of torch's ``interpolate(mode="bilinear", antialias=True, align_corners=False)``
    along one axis (Pillow's triangle filter, widened by the scale when shrinking), so the ONNX backend can
    resize on the host without torch and get the same pixels (to float rounding)."""
    scale = n_in / n_out
    support = max(scale, 1.0)  # the triangle filter's radius in input pixels
    inv = 1.0 / support
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    for i in range(n_out):
        center = scale * (i + 0.5)
        lo, hi = max(int(center - support + 0.5), 0), min(int(center + support + 0.5), n_in)
        taps = np.arange(lo, hi)
        w = np.clip(1.0 - np.abs((taps - center + 0.5) * inv), 0.0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights.astype(np.float32)


def load_onnx_classifier(model: Any = "default", *, tta: str | None = None, device: str = "auto",
                         batch_size: int = 64, threads: int | None = None) -> OnnxClassifier:
    """An .onnx file, a shipped model (its shipped .onnx when present) or a checkpoint exported once into
    ferkit's cache (keyed by the checkpoint's SHA-256 and the TTA mode). ``threads`` caps ONNX Runtime's
    intra-op threads (default: its own choice, all cores)."""
    spec = str(model)
    if spec.endswith(".onnx"):
        path = Path(spec)
        if not path.is_file():
            raise ModelError(f"ONNX model {spec!r} not found; create one with `ferkit export MODEL --format onnx`")
    else:
        shipped = WEIGHTS_DIR / f"{spec}.onnx"
        path = shipped if shipped.is_file() and "/" not in spec else _cached_export(spec, tta)
    clf = OnnxClassifier(path, device=device, batch_size=batch_size, threads=threads)
    if tta is not None and tta != clf.tta:
        if spec.endswith(".onnx"):
            raise ModelError(f"{path} was exported with tta={clf.tta!r}; re-export with --tta {tta} to change it")
        clf = OnnxClassifier(_cached_export(spec, tta), device=device, batch_size=batch_size, threads=threads)
    return clf


def _cached_export(spec: str, tta: str | None) -> Path:
    from ferkit.checkpoint import load_checkpoint, resolve_checkpoint
    from ferkit.paths import cache_dir

    ckpt_path = resolve_checkpoint(spec)
    mode = tta or load_checkpoint(ckpt_path)["config"].get("tta", "none")
    path = cache_dir("onnx") / f"{ckpt_path.stem}-{_sha256(ckpt_path)[:16]}-tta_{mode}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX once (cached at %s)", spec, path)
        export_onnx(ckpt_path, path, tta=mode)
    return path


def _sha256(path: Path) -> str:
    from ferkit.faces import sha256_file

    return sha256_file(Path(path))
