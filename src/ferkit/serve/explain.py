"""Explanations for the API: per face, the Recognizer's result and a heatmap overlay PNG (base64).

The maps need the model in PyTorch, which the base install does not have. Nothing here imports torch until an
explanation is asked for; without it the answer is 501 with the command that installs it. The PyTorch model
loads once, on the first request, and explanations run one at a time (the methods attach hooks to it).
"""
from __future__ import annotations

import base64
import io
import threading
from typing import Any

import numpy as np

from ferkit import deps
from ferkit.serve.limits import ApiError
from ferkit.serve.settings import EXPLAIN_METHODS


def check_method(method: str | None) -> str:
    if method not in EXPLAIN_METHODS:
        given = "no method" if not method else f"method {method!r}"
        raise ApiError(400, f"{given}; choose ?method={' | '.join(EXPLAIN_METHODS)}")
    return method


class Explainer:
    """Explains images for one Recognizer with the PyTorch twin of its model (``model`` as served)."""

    def __init__(self, recognizer, model: str):
        self.recognizer, self.model = recognizer, model
        self._net = None
        self._lock = threading.Lock()

    def unavailable(self) -> str | None:
        """Why this server cannot explain (missing packages, a model without a checkpoint), or None."""
        absent = deps.missing("torch", "matplotlib")
        if absent:
            return deps.missing_message(absent, "POST /api/v1/explain") + ", then restart ferkit serve"
        if str(self.model).endswith(".onnx"):
            return (f"explanations need the model's PyTorch checkpoint; this server runs the ONNX file {self.model} "
                    f"(start it with --model CHECKPOINT.pt)")
        return None

    def __call__(self, image_rgb: np.ndarray, method: str) -> list[dict[str, Any]]:
        """Each face of ``image_rgb`` as ``FaceResult.to_dict()`` plus ``explanation``: method, target, layer and
        the overlay ``png`` (base64); faces too small to classify have no explanation."""
        from ferkit.analysis.explain_faces import explain_image
        from ferkit.plots.explain import overlay

        with self._lock:
            faces = explain_image(self.recognizer, image_rgb, [method], model=self._torch_model(), color="rgb")
        out = []
        for f in faces:
            entry = f.face.to_dict()
            e = f.explanations.get(method)
            if e is not None:
                entry["explanation"] = {"method": method, "target": e.labels[int(e.target[0])], "layer": e.layer,
                                        "png": _png_base64(overlay(f.display, e.maps[0]))}
            out.append(entry)
        return out

    def _torch_model(self):
        """A copy of the model of its own, even when the Recognizer runs on PyTorch: the methods' hooks would
        otherwise fire on the predictions other threads run meanwhile."""
        if self._net is None:
            from ferkit.models.checkpoint import load_model

            self._net = load_model(self.model, device="cpu")
        return self._net


def _png_base64(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")
