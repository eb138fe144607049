"""Looking into models: ``study`` runs occlusion studies (fine-tune per mask, evaluate under every mask);
``explain`` computes heatmaps of where a model looks (Grad-CAM, saliency, SmoothGrad, occlusion), for the faces
of a photo (``explain_image``) or per emotion over a dataset split (``explain_dataset``).

The names below load lazily: importing ``ferkit.analysis`` imports no torch.
"""
from __future__ import annotations

from ferkit.lazy import lazy_exports

# name -> module that defines it
_PUBLIC = {
    "explain_image": "ferkit.analysis.explain_faces",
    "explain_dataset": "ferkit.analysis.emotion_maps",
}

__all__ = list(_PUBLIC)


__getattr__ = lazy_exports(__name__, _PUBLIC)
