"""What a model sees of a face crop: the centre window a ``face_crop`` model is fed, and the test-time
augmentation views whose predictions are averaged. The torch pipeline, the ONNX export, `ferkit explain` and
the CLI all take these from here, so a face is cut the same way whichever of them handles it. Importing this
module does not import torch (the ONNX backend uses the window and the mode names); ``tta_views`` does."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ferkit.errors import FerkitError

if TYPE_CHECKING:
    import torch

# Test-time augmentation modes (views made by tta_views). "adaptive" is not a fixed set of views: flip for every
# face, then flip_shift's other eight views only for the faces whose flip answer gives its top class less than
# ADAPTIVE_CONFIDENCE (a calibrated probability); those faces get flip_shift's answer exactly. On the shipped
# `default` that is about a fifth of FER2013's test faces, so it costs ~3.5 views a face instead of 10 for most
# of flip_shift's gain (docs/experiments/test-time-augmentation.md).
TTA_MODES = ("none", "flip", "flip_shift", "flip_crop", "adaptive")
FIXED_TTA_MODES = ("none", "flip", "flip_shift", "flip_crop")
ADAPTIVE_CONFIDENCE = 0.5
ADAPTIVE_STAGES = ("flip", "flip_shift")  # what every face gets, what the unsure ones get
VIEW_COUNTS = {"none": 1, "flip": 2, "flip_shift": 10, "flip_crop": 10}  # views tta_views / host_views make
# The first stage's views are the second stage's first views (the face, its mirror image), so the second stage
# computes only the views after them; tests/test_views.py checks that prefix on both backends' view makers.
ADAPTIVE_FIRST_VIEWS = VIEW_COUNTS[ADAPTIVE_STAGES[0]]


def fixed_views(mode: str) -> str:
    """The fixed view set whose views ``mode`` may need: flip_shift's for adaptive, else the mode itself."""
    return ADAPTIVE_STAGES[1] if mode == "adaptive" else mode


def unsure(scaled_logits, threshold: float | None = None):
    """Boolean mask of the rows (temperature-scaled logits, numpy or torch) whose softmax top class is below
    ``threshold``: the faces adaptive TTA looks at again. max softmax < t  <=>  logsumexp(z - max z) > -log t."""
    threshold = ADAPTIVE_CONFIDENCE if threshold is None else threshold
    if hasattr(scaled_logits, "logsumexp"):  # torch
        top = scaled_logits.max(dim=1, keepdim=True).values
        return (scaled_logits - top).logsumexp(dim=1) > -math.log(threshold)
    z = scaled_logits - scaled_logits.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) > -math.log(threshold)


def adaptive_mean(view_logits, temperature: float = 1.0, threshold: float | None = None):
    """Adaptive TTA's mean logits from all of flip_shift's V x N x K view logits (numpy or torch; view 0 the
    face, view 1 its mirror image): flip's mean where flip is sure, flip_shift's mean elsewhere. For scoring
    every mode from one pass (training's validation); inference computes the extra views for unsure faces only."""
    flip, full = view_logits[:ADAPTIVE_FIRST_VIEWS].mean(0), view_logits.mean(0)
    mask = unsure(flip / temperature, threshold)
    if hasattr(mask, "unsqueeze"):  # torch
        return flip.where(~mask.unsqueeze(1), full)
    return np.where(mask[:, None], full, flip)


def check_tta(mode: str, what: str = "TTA mode") -> str:
    """``mode`` if it names a test-time augmentation, else a FerkitError that lists the ones there are."""
    if mode not in TTA_MODES:
        raise FerkitError(f"unknown {what} {mode!r}; choose one of {', '.join(TTA_MODES)}")
    return mode


def centre_window(height: int, width: int, share: float) -> tuple[slice, slice]:
    """Row and column slices of the centre ``share`` of an image's sides (whole pixels, at least one)."""
    if share >= 1.0:
        return slice(0, height), slice(0, width)
    ch, cw = max(1, round(height * share)), max(1, round(width * share))
    top, left = (height - ch) // 2, (width - cw) // 2
    return slice(top, top + ch), slice(left, left + cw)


def crop_side(input_size: int, face_crop: float) -> int:
    """Side of the face crops whose centre ``face_crop`` is ``input_size`` pixels."""
    return max(input_size, round(input_size / face_crop))


def tta_views(x: torch.Tensor, mode: str, size: int | None = None) -> list[torch.Tensor]:
    """The augmented copies of a normalised batch whose predictions are averaged.

    ``size`` is the batch's side; give it as an int when tracing for export (the tracer hands
    ``x.shape[-1]`` over as a tensor).
    """
    import torch.nn.functional as F

    check_tta(mode)
    if mode == "adaptive":
        raise FerkitError("adaptive TTA has no fixed views: its second stage depends on the first stage's answer "
                          "(ferkit.inference.torch_backend.predict_logits runs it)")
    size = x.shape[-1] if size is None else size
    views = [x]
    if mode != "none":
        views.append(x.flip(-1))
    if mode == "flip_shift":
        # The face moved by 5% of its side up, down, left and right (edge pixels repeated), each also
        # flipped: small shifts the model saw in training, without the resampling blur of a zoom.
        d = max(1, round(size / 20))
        padded = F.pad(x, (d, d, d, d), mode="replicate")
        for dy, dx in ((-d, 0), (d, 0), (0, -d), (0, d)):
            view = padded[..., d + dy:d + dy + size, d + dx:d + dx + size]
            views += [view, view.flip(-1)]
    if mode == "flip_crop":
        # Four corner crops of 7/8 the side, resized back.
        crop = round(size * 7 / 8)
        for dy, dx in ((0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop)):
            patch = x[..., dy:dy + crop, dx:dx + crop]
            patch = F.interpolate(patch, size=(size, size), mode="bilinear", align_corners=False)
            views += [patch, patch.flip(-1)]
    return views
