"""Looking into models: ``study`` runs occlusion studies (fine-tune per mask, evaluate under every mask);
``explain`` computes heatmaps of where a model looks (Grad-CAM, saliency, SmoothGrad, occlusion), for the faces
of a photo (``explain_image``) or per emotion over a dataset split (``explain_dataset``).

The names below load lazily: importing ``ferkit.analysis`` imports no torch.
"""
from __future__ import annotations

import importlib

# name -> module that defines it
_PUBLIC = {
    "explain_image": "ferkit.analysis.explain_faces",
    "explain_dataset": "ferkit.analysis.emotion_maps",
}

__all__ = list(_PUBLIC)


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'ferkit.analysis' has no attribute {name!r}")
