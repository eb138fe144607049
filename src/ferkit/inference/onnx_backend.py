"""The ONNX Runtime backend: runs a ferkit .onnx export (see ``ferkit.inference.export``) with numpy and
onnxruntime only; never imports torch. Settings (labels, input size, face crop, TTA) come from the file's
own metadata.

A graph exported without TTA (``tta=none``) can still average any TTA mode: the views are cut on the host
(``host_views``, the same pixels ``ferkit.transforms.views.tta_views`` gives torch), run through the graph in
one batch, and their logits averaged before the softmax, as the TTA graphs do inside. So a model shipped
without TTA keeps ``--tta flip_shift`` one flag away on the base install, without torch to re-export it.
Adaptive TTA, whose second batch depends on the first one's answer, runs only this way."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.deps import require
from ferkit.batching import iter_batches
from ferkit.errors import DataError, ModelError
from ferkit.inference.export import HOST_TTA_KEY, INPUT_NAME, META_PREFIX, OUTPUT_NAMES
from ferkit.inference.quantize import QUANT_KEY
from ferkit.paths import WEIGHTS_DIR, cache_dir
from ferkit.transforms.views import (ADAPTIVE_FIRST_VIEWS, ADAPTIVE_STAGES, centre_window, check_tta, crop_side,
                                    unsure)

log = logging.getLogger(__name__)


class OnnxClassifier:
    """Runs an exported ferkit .onnx file on ONNX Runtime; settings come from the file's own metadata."""

    backend = "onnx"

    def __init__(self, path: str | Path, *, device: str = "auto", batch_size: int = 64, threads: int | None = None,
                 tta: str | None = None):
        require("onnxruntime", for_what="the ONNX Runtime backend")
        import onnxruntime as ort

        self.path = Path(path)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        device = str(device)
        if device not in ("auto", "cpu") and not device.startswith("cuda"):
            raise ModelError(f"device {device!r}: the ONNX Runtime backend runs on cpu or cuda; use --backend torch "
                             f"for other devices")
        wants_gpu = device == "auto" or device.startswith("cuda")
        if wants_gpu and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        elif device.startswith("cuda"):  # asked for explicitly: running on the CPU instead would be a silent surprise
            have = ", ".join(p.replace("ExecutionProvider", "") for p in ort.get_available_providers())
            raise ModelError(f"device {device!r}: this onnxruntime has no CUDA provider (it has: {have}); install "
                             f"onnxruntime-gpu, or use --device cpu (or auto)")
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
        self.graph_tta, own = file_tta(meta)
        self.tta = own if tta is None else check_tta(tta)
        if self.tta != self.graph_tta and self.graph_tta != "none":
            raise ModelError(f"{self.path} was exported with tta={self.graph_tta!r}; re-export with --tta {self.tta} "
                             f"to change it (or with --tta none, which lets any TTA run on the host)")
        self.host_tta = self.tta if self.graph_tta == "none" else "none"  # the views cut here, before the graph
        self.labels = tuple(self.config_dict["labels"])
        self.input_size = int(self.config_dict["input_size"])
        self.face_crop = float(self.config_dict.get("face_crop", 1.0))
        self.crop_size = crop_side(self.input_size, self.face_crop)
        self.crop_margin = float(self.config_dict.get("crop_margin", 0.0))
        self.batch_size = batch_size
        self.providers = self.session.get_providers()
        self.description = (f"{self.path.name} ({self.config_dict['arch']}{', int8' if self.quantized else ''}, "
                            f"onnxruntime {self.providers[0].replace('ExecutionProvider', '')}, tta={self.tta})")

    @property
    def config(self):
        """The ModelConfig (imports torch via ferkit.models.checkpoint; the backend itself does not need it)."""
        from ferkit.models.config import ModelConfig

        return ModelConfig.from_dict(self.config_dict)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        faces = self.graph_input(np.asarray(faces))
        out = np.empty((len(faces), len(self.labels)), dtype=np.float32)
        for sl in iter_batches(len(faces), self.batch_size):
            if self.host_tta == "none":
                out[sl] = self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: faces[sl]})[0]
                continue
            if self.host_tta == "adaptive":
                mean = self._adaptive_logits(faces[sl])
            else:
                mean = self._mean_logits(host_views(faces[sl], self.host_tta))
            e = np.exp(mean - mean.max(1, keepdims=True))
            out[sl] = e / e.sum(1, keepdims=True)
        return out

    def _mean_logits(self, views: list[np.ndarray]) -> np.ndarray:
        """Mean logits (already divided by the temperature, inside the graph) of equal-sized view batches."""
        logits = self.session.run([OUTPUT_NAMES[1]], {INPUT_NAME: np.concatenate(views)})[0]
        return logits.reshape(len(views), -1, logits.shape[1]).mean(0)

    def _adaptive_logits(self, x: np.ndarray) -> np.ndarray:
        """Adaptive TTA, as ``torch_backend.predict_logits`` runs it: flip's two views for every face, the rest
        of flip_shift's views for the faces flip is unsure of."""
        first, second = ADAPTIVE_STAGES
        mean = self._mean_logits(host_views(x, first))
        again = unsure(mean)
        if again.any():
            k = ADAPTIVE_FIRST_VIEWS
            rest = host_views(x[again], second)[k:]
            mean[again] = (k * mean[again] + len(rest) * self._mean_logits(rest)) / (k + len(rest))
        return mean

    @property
    def quantized(self) -> bool:
        """Whether the graph is an INT8 one (``ferkit.inference.quantize``)."""
        return QUANT_KEY in self.metadata

    def graph_input(self, faces: np.ndarray) -> np.ndarray:
        """uint8 face crops as the graph takes them: float32 N x S x S x 3, the model's centre window, resized."""
        if faces.dtype != np.uint8:
            raise DataError(f"expected uint8 face crops, got {faces.dtype}")
        if faces.ndim == 3:  # grayscale crops: RGB with equal channels has the same luma
            faces = np.repeat(faces[..., None], 3, axis=3)
        if faces.ndim != 4 or faces.shape[3] != 3:
            raise DataError(f"expected N x H x W or N x H x W x 3 faces, got shape {faces.shape}")
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


def file_tta(meta: dict[str, str]) -> tuple[str, str]:
    """From a ferkit export's metadata: (the TTA averaged inside the graph, the TTA the file runs by default).
    A bare graph can name the TTA its model ships with (``export_onnx(tta_on_host=True)``); the host runs that."""
    graph = meta.get(META_PREFIX + "tta", "none")
    own = meta.get(META_PREFIX + HOST_TTA_KEY) if graph == "none" else None
    return graph, own or graph


def host_views(x: np.ndarray, mode: str) -> list[np.ndarray]:
    """``tta_views`` on the host: the views of an N x S x S x C float batch (the graph's input), in the order
    and with the pixels torch's TTA graphs use (flip; 5% shifts with edge pixels repeated; 7/8 corner crops
    resized back bilinearly). Adaptive TTA has no fixed views (``OnnxClassifier._adaptive_logits``)."""
    if mode == "adaptive":
        raise ModelError("adaptive TTA has no fixed views; OnnxClassifier runs its two stages")
    size = x.shape[1]
    views = [x]
    if mode != "none":
        views.append(x[:, :, ::-1])
    if mode == "flip_shift":
        d = max(1, round(size / 20))
        padded = np.pad(x, ((0, 0), (d, d), (d, d), (0, 0)), mode="edge")
        for dy, dx in ((-d, 0), (d, 0), (0, -d), (0, d)):
            view = padded[:, d + dy:d + dy + size, d + dx:d + dx + size]
            views += [view, view[:, :, ::-1]]
    if mode == "flip_crop":
        crop = round(size * 7 / 8)
        up = resize_matrix(crop, size)  # upsampling: torch's bilinear, antialiased or not, gives these weights
        for dy, dx in ((0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop)):
            patch = np.einsum("oh,nhwc,pw->nopc", up, x[:, dy:dy + crop, dx:dx + crop], up, optimize=True)
            views += [patch, patch[:, :, ::-1]]
    return [np.ascontiguousarray(v, dtype=np.float32) for v in views]


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
    require("onnxruntime", for_what="the ONNX Runtime backend")  # before a checkpoint is exported for it
    spec = str(model)
    kw = dict(device=device, batch_size=batch_size, threads=threads)
    if spec.endswith(".onnx"):
        path = Path(spec)
        if not path.is_file():
            raise ModelError(f"ONNX model {spec!r} not found; create one with `ferkit export MODEL --format onnx`")
        return OnnxClassifier(path, tta=tta, **kw)  # a TTA baked into the graph cannot change: it says so
    shipped = WEIGHTS_DIR / f"{spec}.onnx"
    if shipped.is_file() and "/" not in spec:
        clf = OnnxClassifier(shipped, **kw)
        if tta is None or tta == clf.tta:
            return clf
        if clf.graph_tta == "none":
            return OnnxClassifier(shipped, tta=tta, **kw)  # the other TTA's views cut on the host
    # A checkpoint, or a shipped graph with another TTA inside: exported once, without TTA when one is asked for
    # (the host cuts its views), else with the checkpoint's own.
    return OnnxClassifier(_cached_export(spec, None if tta is None else "none"), tta=tta, **kw)


def _cached_export(spec: str, tta: str | None) -> Path:
    from ferkit.models.checkpoint import checkpoint_digest, load_checkpoint, resolve_checkpoint, spec_stem, split_member

    ckpt_path = resolve_checkpoint(spec)
    _, member = split_member(spec)
    stem = f"{spec_stem(spec)}-{checkpoint_digest(spec)[:16]}-tta_"
    if tta is not None and (cache_dir("onnx") / f"{stem}{tta}.onnx").is_file():
        return cache_dir("onnx") / f"{stem}{tta}.onnx"  # exported earlier: runs without PyTorch
    require("torch", "onnx", for_what=f"running {ckpt_path} on ONNX Runtime (it is exported to ONNX once)")
    from ferkit.inference.export import export_onnx

    mode = tta or load_checkpoint(spec)["config"].get("tta", "none")
    path = cache_dir("onnx") / f"{stem}{mode}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX once (cached at %s)", spec, path)
        export_onnx(ckpt_path if member is None else spec, path, tta=mode)  # the file's path as its source
    return path
