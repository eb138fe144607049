"""From an image to emotions, without PyTorch unless the torch backend is chosen.

``recognizer``: the ``Recognizer`` API (detect, align, crop, classify); ``detectors``: Haar, YuNet and the
YuNet download; ``align``: the upright square face crop; ``classifier``: the backend choice;
``onnx_backend`` (ONNX Runtime, numpy) and ``torch_backend`` (PyTorch); ``export``: checkpoint to a
self-describing .onnx; ``imageio``: decoding paths, bytes, PIL images and arrays; ``results``: ``FaceResult``;
``drawing``: the overlay.
"""
from __future__ import annotations

from ferkit.lazy import lazy_exports

_PUBLIC = {"Recognizer": "ferkit.inference.recognizer", "FaceResult": "ferkit.inference.results"}

__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
