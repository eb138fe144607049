"""ferkit: facial expression recognition toolkit.

Heavy parts (torch models, OpenCV, ONNX Runtime) load lazily, so ``import ferkit`` stays cheap.
"""
from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["Recognizer", "FerkitError", "__version__"]


def __getattr__(name: str):
    if name == "Recognizer":
        from ferkit.inference.recognizer import Recognizer

        return Recognizer
    if name == "FerkitError":
        from ferkit.errors import FerkitError

        return FerkitError
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")
