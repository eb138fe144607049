"""Heatmaps for the faces in a photo, each stated with the prediction ``Recognizer.predict`` gives for it.

    >>> from ferkit import Recognizer
    >>> from ferkit.analysis import explain_image
    >>> rec = Recognizer(backend="torch")                     # the maps need the PyTorch model
    >>> for face in explain_image(rec, "photo.jpg", ["gradcam", "occlusion"]):
    ...     face.face.emotion, face.face.probs[face.face.emotion]   # exactly what rec.predict says
    ...     face.save("out/", "photo_face0")                       # one overlay PNG per method

The Recognizer finds, aligns and crops the faces and states the emotion and its probability, test-time
augmentation included; the maps are computed on the very crop it classified, with the PyTorch model, and
explain that emotion (or ``target``) in the unaugmented view.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch.nn as nn

from ferkit.analysis.explain import Explanation, explain, method_options
from ferkit.errors import FerkitError
from ferkit.inference.align import crop_face
from ferkit.inference.imageio import ImageInput, load_image
from ferkit.inference.recognizer import Recognizer
from ferkit.inference.results import FaceResult
from ferkit.models.config import ModelConfig
from ferkit.transforms.views import centre_window

#: What ``explain_image`` (and ``ferkit explain IMAGE``) computes unless told otherwise.
IMAGE_METHODS: tuple[str, ...] = ("gradcam",)
DISPLAY_SIZE = 192  # pixels: the face in the overlay PNGs, re-cropped from the photo rather than upscaled


@dataclass
class FaceExplanation:
    """One face of a photo: ``face`` is the Recognizer's result for it (box, emotion, probabilities, as
    ``predict`` reports them); ``explanations`` the maps per method, empty for a face under ``min_face``."""

    face: FaceResult
    explanations: dict[str, Explanation] = field(default_factory=dict)  # method -> this face alone (N = 1)
    display: np.ndarray | None = None  # RGB uint8: the part of the face the model sees, at overlay resolution

    def title(self, method: str) -> str:
        """E.g. "happy 60%  ·  gradcam @ features": the stated prediction, the method, target and layer."""
        e = self.explanations[method]
        emotion = self.face.emotion
        text = f"{emotion} {self.face.probs[emotion]:.0%}  ·  {method}"
        target = e.labels[int(e.target[0])]
        if target != emotion:
            text += f" for {target}"
        if e.layer:
            text += f" @ {e.layer}"
        return text

    def save(self, out_dir: str | Path, name: str) -> dict[str, Path]:
        """One PNG per method, ``out_dir/{name}_{method}.png``: the face and its heatmap overlay (a grid of
        the layer's channels for ``features``), titled with ``title``."""
        from ferkit.plots.explain import save_feature_grid, save_overlay

        written = {}
        for method, e in self.explanations.items():
            png = Path(out_dir) / f"{name}_{method}.png"
            if method == "features":
                save_feature_grid(png, e.features[0], self.title(method))
            else:
                save_overlay(png, self.display, e.maps[0], self.title(method))
            written[method] = png
        return written

    def to_dict(self, files: Mapping[str, str | Path] | None = None, decimals: int = 4) -> dict[str, Any]:
        """``FaceResult.to_dict()`` (the ``predict --json`` face) plus ``explanations``: per method the target,
        layer and raw map (rounded to ``decimals``), and the PNG from ``files`` when given."""
        out = self.face.to_dict()
        out["explanations"] = {}
        for method, e in self.explanations.items():
            data = e.face_json(0, decimals)
            entry = {k: data[k] for k in ("target", "layer", "map")}
            if files and method in files:
                entry["png"] = str(files[method])
            out["explanations"][method] = entry
        return out


def explain_image(recognizer: Recognizer, image: ImageInput, methods: Sequence[str] = IMAGE_METHODS, *,
                  target: str | int | None = None, model: tuple[nn.Module, ModelConfig] | None = None,
                  color: str = "bgr", batch_size: int = 64, **options: Any) -> list[FaceExplanation]:
    """Explain every face the Recognizer finds in ``image``, left to right, one entry per face of ``predict``.

    Each map explains the face's predicted emotion, or ``target`` (an emotion name or class index). The maps
    run on ``model`` (the checkpoint's PyTorch model and config), by default the Recognizer's own, which then
    needs ``backend="torch"``; with an ONNX Runtime Recognizer pass the same model loaded with
    ``ferkit.models.checkpoint.load_model``. ``options`` are the methods' own (layer, patch, stride, samples,
    noise, ...); one that none of ``methods`` takes is refused. ``color`` says how to read a numpy ``image``.
    """
    per_method = method_options(methods, options)
    net, config = maps_model(recognizer, model)
    rgb = load_image(image, color=color)
    found = recognizer.predict_with_crops(rgb)
    kept = [i for i, (_, _, crop) in enumerate(found) if crop is not None]
    results = [FaceExplanation(face) for face, _, _ in found]
    if not kept:
        return results
    crops = np.stack([found[i][2] for i in kept])
    labels = list(config.labels)
    targets = np.array([labels.index(found[i][0].emotion) for i in kept]) if target is None else target
    device = next(net.parameters()).device
    explained = {m: explain(net, crops, config, m, targets, device=device, batch_size=batch_size, **opts)
                 for m, opts in per_method.items()}
    shown = max(config.crop_size, DISPLAY_SIZE)
    for k, i in enumerate(kept):
        big = crop_face(rgb, found[i][1], shown, recognizer.crop_margin, recognizer.align)
        rows, cols = centre_window(shown, shown, config.face_crop)
        results[i].display = big[rows, cols]
        results[i].explanations = {m: e.face(k) for m, e in explained.items()}
    return results


def maps_model(recognizer: Recognizer, model: tuple[nn.Module, ModelConfig] | None = None
               ) -> tuple[nn.Module, ModelConfig]:
    """The PyTorch model ``explain_image`` draws the maps with: ``model``, checked to take the Recognizer's crops
    and give its labels, else the Recognizer's own (a FerkitError unless it runs on torch)."""
    clf = recognizer.classifier
    if model is None:
        if not (isinstance(getattr(clf, "model", None), nn.Module) and hasattr(clf, "config")):
            raise FerkitError(
                f"explanations run on the PyTorch model, and this Recognizer runs {clf.description}: build it with "
                f"backend='torch', or pass model=load_model(...) of the same checkpoint")
        return clf.model, clf.config
    net, config = model
    if tuple(config.labels) != tuple(clf.labels) or config.crop_size != clf.crop_size:
        raise FerkitError(
            f"the model for the maps ({config.arch}, labels {', '.join(config.labels)}, {config.crop_size} px crops) "
            f"is not the Recognizer's ({clf.description}, labels {', '.join(clf.labels)}, {clf.crop_size} px crops)")
    return net, config
