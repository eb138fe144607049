"""Classifiers turn face crops into probabilities; one backend each (``torch_backend``, ``onnx_backend``).

This module imports neither torch nor onnxruntime: ``load_classifier`` imports the chosen backend only, so the
ONNX path starts without paying for PyTorch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ferkit.devices import resolve_device
from ferkit.errors import FerkitError
from ferkit.paths import WEIGHTS_DIR
from ferkit.transforms.views import check_tta

BACKENDS = ("auto", "torch", "onnx")


class Classifier(Protocol):
    """What the Recognizer needs from a backend; both read their settings from the model's own config."""

    labels: tuple[str, ...]
    input_size: int
    crop_size: int  # side of the face crops predict_proba wants (input_size / the config's face_crop)
    crop_margin: float
    tta: str
    description: str

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """N x H x W x 3 RGB (or N x H x W gray) uint8 crops -> N x num_classes float32 probabilities."""
        ...


def resolve_backend(model: Any, backend: str = "auto", device: str = "auto") -> str:
    """"auto" runs .onnx files on ONNX Runtime, and shipped models too when onnxruntime is installed, the run is
    on CPU and the model's .onnx is shipped next to its .pt: that starts without importing torch (~0.5 s instead
    of ~3 s here) and is the faster CPU backend. Everything else (checkpoints, GPUs, in-memory models) runs on
    torch."""
    if backend not in BACKENDS:
        raise FerkitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    spec = str(model) if isinstance(model, (str, Path)) else None
    if spec is not None and spec.endswith(".onnx"):
        return "onnx"  # the only runtime that can run it
    shipped_onnx = spec is not None and "/" not in spec and (WEIGHTS_DIR / f"{spec}.onnx").is_file()
    import importlib.util

    if shipped_onnx and device in ("auto", "cpu") and importlib.util.find_spec("onnxruntime") is not None:
        return "onnx"
    return "torch"


def load_classifier(model: Any = "default", *, backend: str = "auto", device: str = "auto", tta: str | None = None,
                    batch_size: int = 64) -> Classifier:
    """A shipped model name, a checkpoint (.pt), an exported .onnx file, an in-memory (nn.Module, ModelConfig)
    pair (torch backend) or a ready Classifier."""
    backend = resolve_backend(model, backend, device)
    if tta is not None:
        check_tta(tta)
    if hasattr(model, "predict_proba"):
        return model
    if isinstance(model, tuple):
        from ferkit.inference.torch_backend import TorchClassifier

        net, config = model
        device = resolve_device(device)
        return TorchClassifier(net.eval().to(device), config, device=device, tta=tta, batch_size=batch_size,
                               name=type(net).__name__)
    if backend == "onnx":
        from ferkit.inference.onnx_backend import load_onnx_classifier

        return load_onnx_classifier(model, tta=tta, device=device, batch_size=batch_size)
    if str(model).endswith(".onnx"):
        raise FerkitError(f"{model} is an ONNX file; use backend='onnx' (--backend onnx) to run it")
    from ferkit.inference.torch_backend import TorchClassifier

    return TorchClassifier.load(model, device=device, tta=tta, batch_size=batch_size)
