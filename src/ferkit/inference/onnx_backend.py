"""The ONNX Runtime backend: runs a ferkit .onnx export (see ``ferkit.inference.export``) with numpy and
onnxruntime only; never imports torch. Settings (labels, input size, face crop, TTA) come from the file's
own metadata."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.deps import require
from ferkit.batching import iter_batches
from ferkit.errors import DataError, ModelError
from ferkit.inference.export import INPUT_NAME, META_PREFIX, OUTPUT_NAMES
from ferkit.paths import WEIGHTS_DIR, cache_dir, sha256_file
from ferkit.transforms.views import centre_window, crop_side

log = logging.getLogger(__name__)


class OnnxClassifier:
    """Runs an exported ferkit .onnx file on ONNX Runtime; settings come from the file's own metadata."""

    backend = "onnx"

    def __init__(self, path: str | Path, *, device: str = "auto", batch_size: int = 64, threads: int | None = None):
        require("onnxruntime", for_what="the ONNX Runtime backend")
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
        """The ModelConfig (imports torch via ferkit.models.checkpoint; the backend itself does not need it)."""
        from ferkit.models.config import ModelConfig

        return ModelConfig.from_dict(self.config_dict)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        faces = self._as_input(np.asarray(faces))
        out = np.empty((len(faces), len(self.labels)), dtype=np.float32)
        for sl in iter_batches(len(faces), self.batch_size):
            out[sl] = self.session.run([OUTPUT_NAMES[0]], {INPUT_NAME: faces[sl]})[0]
        return out

    def _as_input(self, faces: np.ndarray) -> np.ndarray:
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
    from ferkit.models.checkpoint import load_checkpoint, resolve_checkpoint

    ckpt_path = resolve_checkpoint(spec)
    require("torch", "onnx", for_what=f"running {ckpt_path} on ONNX Runtime (it is exported to ONNX once)")
    from ferkit.inference.export import export_onnx

    mode = tta or load_checkpoint(ckpt_path)["config"].get("tta", "none")
    path = cache_dir("onnx") / f"{ckpt_path.stem}-{sha256_file(ckpt_path)[:16]}-tta_{mode}.onnx"
    if not path.is_file():
        log.info("exporting %s to ONNX once (cached at %s)", spec, path)
        export_onnx(ckpt_path, path, tta=mode)
    return path
