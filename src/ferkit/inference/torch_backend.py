"""The PyTorch backend: batched classification with optional test-time augmentation, the one place logits become
probabilities (evaluation, training's validation and the Recognizer's torch backend all call it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.batching import iter_batches
from ferkit.devices import resolve_device
from ferkit.models.config import ModelConfig
from ferkit.transforms.preprocess import faces_to_tensor
from ferkit.transforms.views import ADAPTIVE_FIRST_VIEWS, ADAPTIVE_STAGES, fixed_views, tta_views, unsure


@torch.inference_mode()
def view_logits(model: nn.Module, x: torch.Tensor, tta: str = "none") -> torch.Tensor:
    """V x N x K logits, one row per TTA view of a normalised batch (view 0 is the batch itself); adaptive TTA
    gets all of flip_shift's views (``ferkit.transforms.views.adaptive_mean`` picks from them)."""
    views = tta_views(x, fixed_views(tta))
    if len(views) == 1:
        return model(x).float().unsqueeze(0)
    stacked = torch.cat(views)  # one big forward pass beats several small ones on CPU
    return model(stacked).float().view(len(views), x.shape[0], -1)


@torch.inference_mode()
def predict_logits(model: nn.Module, x: torch.Tensor, tta: str = "none", temperature: float = 1.0) -> torch.Tensor:
    """Mean logits over the TTA views of a normalised batch. Adaptive TTA runs flip's two views, then the rest
    of flip_shift's views for the faces whose flip answer (logits / ``temperature``) is unsure."""
    if tta != "adaptive":
        return view_logits(model, x, tta).mean(0)
    first, second = ADAPTIVE_STAGES
    logits = view_logits(model, x, first).mean(0)
    again = unsure(logits / temperature)
    if bool(again.any()):
        k = ADAPTIVE_FIRST_VIEWS
        rest = tta_views(x[again], second)[k:]  # the second stage's views after the first stage's
        more = model(torch.cat(rest)).float().view(len(rest), -1, logits.shape[1])
        logits[again] = (k * logits[again] + more.sum(0)) / (k + len(rest))
    return logits


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
        logits = predict_logits(model, x, tta, config.temperature) / config.temperature
        out[sl] = F.softmax(logits, dim=1).cpu().numpy()
    return out


class TorchClassifier:
    """The Recognizer's PyTorch backend: ``classify``, i.e. exactly the preprocessing used in evaluation."""

    backend = "torch"

    def __init__(self, model, config, *, device: str = "cpu", tta: str | None = None, batch_size: int = 64,
                 name: str = "model"):
        import torch

        # faces_to_tensor hands the model channels-last batches; matching weights let oneDNN skip a layout
        # conversion per convolution (about 2x faster on CPU for the small CNNs).
        self.model = model.to(memory_format=torch.channels_last)
        self.config, self.device = config, device
        self.tta = config.tta if tta is None else tta
        self.batch_size = batch_size
        self.labels = tuple(config.labels)
        self.input_size = int(config.input_size)
        self.crop_size = int(config.crop_size)
        self.crop_margin = float(config.crop_margin)
        self.description = f"{name} ({config.arch}, torch on {device}, tta={self.tta})"

    @classmethod
    def load(cls, spec: str | Path, *, device: str = "auto", tta: str | None = None,
             batch_size: int = 64) -> "TorchClassifier":
        from ferkit.models.checkpoint import load_model

        device = resolve_device(device)
        model, config = load_model(spec, device=device)
        return cls(model, config, device=device, tta=tta, batch_size=batch_size, name=Path(str(spec)).name)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        from ferkit.inference.torch_backend import classify

        return classify(self.model, faces, self.config, tta=self.tta, batch_size=self.batch_size, device=self.device)
