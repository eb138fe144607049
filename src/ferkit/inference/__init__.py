"""From an image to emotions, without PyTorch unless the torch backend is chosen.

``recognizer``: the ``Recognizer`` API (detect, align, crop, classify); ``detectors``: Haar, YuNet and the
YuNet download; ``align``: the upright square face crop; ``classifier``: the backend choice;
``onnx_backend`` (ONNX Runtime, numpy) and ``torch_backend`` (PyTorch); ``export``: checkpoint to a
self-describing .onnx; ``imageio``: decoding paths, bytes, PIL images and arrays; ``results``: ``FaceResult``;
``drawing``: the overlay.
"""
from __future__ import annotations

__all__ = ["Recognizer", "FaceResult"]


def __getattr__(name: str):
    if name == "Recognizer":
        from ferkit.inference.recognizer import Recognizer

        return Recognizer
    if name == "FaceResult":
        from ferkit.inference.results import FaceResult

        return FaceResult
    raise AttributeError(f"module 'ferkit.inference' has no attribute {name!r}")
