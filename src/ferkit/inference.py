"""Batched classification with optional test-time augmentation: the one place logits become probabilities."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.checkpoint import ModelConfig
from ferkit.preprocess import faces_to_tensor

from ferkit.views import check_tta


def tta_views(x: torch.Tensor, mode: str, size: int | None = None) -> list[torch.Tensor]:
    """The augmented copies of a normalised batch whose predictions are averaged.

    ``size`` is the batch's side; give it as an int when tracing for export (the tracer hands
    ``x.shape[-1]`` over as a tensor).
    """
    check_tta(mode)
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


@torch.inference_mode()
def view_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """V x N x K logits, one row per TTA view of a normalised batch (view 0 is the batch itself)."""
    views = tta_views(x, tta)
    if len(views) == 1:
        return model(x).float().unsqueeze(0)
    stacked = torch.cat(views)  # one big forward pass beats several small ones on CPU
    return model(stacked).float().view(len(views), x.shape[0], -1)


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """Mean logits over the TTA views of a normalised batch."""
    return view_logits(model, x, tta).mean(0)


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


def classify(model: nn.Module, faces: np.ndarray | torch.Tensor, config: ModelConfig, *,
             tta: str | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
             progress: bool = False) -> np.ndarray:
    """uint8 faces -> N x num_classes probabilities (temperature-scaled as the checkpoint says)."""
    tta = config.tta if tta is None else tta
    n = len(faces)
    out = np.empty((n, config.num_classes), dtype=np.float32)
    batches = iter_batches(n, batch_size)
    if progress:
        from tqdm import tqdm

        batches = tqdm(list(batches), desc="classify", unit="batch", leave=False)
    model.eval()
    for sl in batches:
        x = faces_to_tensor(faces[sl], config, device)
        logits = predict_logits(model, x, tta) / config.temperature
        out[sl] = F.softmax(logits, dim=1).cpu().numpy()
    return out
