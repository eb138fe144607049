"""ferkit: facial expression recognition toolkit.

The public names below load lazily, so ``import ferkit`` stays cheap (no torch, OpenCV or ONNX Runtime until
used). ARCHITECTURE.md in the repository maps the subpackages.
"""
from __future__ import annotations

from ferkit.lazy import lazy_exports

__version__ = "0.1.0"

# name -> module that defines it
_PUBLIC = {
    "Recognizer": "ferkit.inference.recognizer",
    "FaceResult": "ferkit.inference.results",
    "FerkitError": "ferkit.errors",
    "load_dataset": "ferkit.data",
    "create_model": "ferkit.models.registry",
}

__all__ = [*_PUBLIC, "__version__"]


__getattr__ = lazy_exports(__name__, _PUBLIC)
