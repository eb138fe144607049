"""Classifiers turn face crops into probabilities; one backend each (``torch_backend``, ``onnx_backend``).

This module imports neither torch nor onnxruntime: ``load_classifier`` imports the chosen backend only, so the
ONNX path starts without paying for PyTorch, and runs where PyTorch is not installed at all (the base install).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn, Protocol

import numpy as np

from ferkit import deps
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
    if _shipped_onnx(spec) and device in ("auto", "cpu") and deps.available("onnxruntime"):
        return "onnx"
    return "torch"


def _shipped_onnx(spec: str | None) -> bool:
    return spec is not None and "/" not in spec and (WEIGHTS_DIR / f"{spec}.onnx").is_file()


def load_classifier(model: Any = "default", *, backend: str = "auto", device: str = "auto", tta: str | None = None,
                    batch_size: int = 64) -> Classifier:
    """A shipped model name, a checkpoint (.pt), an exported .onnx file, an in-memory (nn.Module, ModelConfig)
    pair (torch backend) or a ready Classifier."""
    chosen = resolve_backend(model, backend, device)
    if tta is not None:
        check_tta(tta)
    if hasattr(model, "predict_proba"):
        return model
    if chosen == "torch" and not deps.available("torch"):
        _refuse_without_torch(model, backend, device)
    if isinstance(model, tuple):
        from ferkit.inference.torch_backend import TorchClassifier

        net, config = model
        device = resolve_device(device)
        return TorchClassifier(net.eval().to(device), config, device=device, tta=tta, batch_size=batch_size,
                               name=type(net).__name__)
    if chosen == "onnx":
        from ferkit.inference.onnx_backend import load_onnx_classifier

        return load_onnx_classifier(model, tta=tta, device=device, batch_size=batch_size)
    if str(model).endswith(".onnx"):
        raise FerkitError(f"{model} is an ONNX file; use backend='onnx' (--backend onnx) to run it")
    from ferkit.inference.torch_backend import TorchClassifier

    return TorchClassifier.load(model, device=device, tta=tta, batch_size=batch_size)


def _refuse_without_torch(model: Any, backend: str, device: str) -> NoReturn:
    """Why PyTorch was wanted where it is not installed, and the way around it."""
    spec = str(model)
    if not (spec.endswith(".onnx") or _shipped_onnx(spec)):
        from ferkit.models.checkpoint import resolve_checkpoint  # torch-free

        resolve_checkpoint(spec)  # a typo is worth saying before "install PyTorch"
        raise deps.MissingDependency(
            deps.missing_message(["torch"], f"the checkpoint {spec}")
            + f"; or export it to ONNX where PyTorch is installed (`ferkit export {spec}`) and load the .onnx file")
    if not deps.available("onnxruntime"):
        raise deps.MissingDependency(f"{spec!r} runs on ONNX Runtime or PyTorch, and neither is installed: "
                                     f"{deps.install_command(['onnxruntime'])}")
    why = "backend 'torch'" if backend == "torch" else f"device {device!r}"  # auto chose torch for the device
    raise deps.MissingDependency(deps.missing_message(["torch"], why) + "; or use backend 'onnx' on the CPU")
