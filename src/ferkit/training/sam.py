"""Sharpness-aware minimisation (``--sam``; Foret et al., ICLR 2021).

Each step first climbs from the weights w to w + e, e = rho * g / ||g||, the nearby point where the loss
rises fastest, and then steps w with the gradient taken there. Weights whose whole neighbourhood has a low
loss (flat minima) are preferred to a sharp dip, which the paper found to generalise better, most on noisy
labels. It costs a second forward and backward pass per step (2.0x per image here; as a fine-tune of the
shipped `default` it did not help: BENCHMARKS.md, "A sharpness-aware fine-tune").
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn as nn

from ferkit.errors import FerkitError


def check_rho(rho: float) -> None:
    if not 0.0 <= rho <= 1.0:
        raise FerkitError(f"--sam is the radius rho of the neighbourhood, e.g. 0.05 (0 switches it off); got {rho}")


class SharpnessAware:
    """Moves a model's trainable weights to the worst nearby point and back."""

    def __init__(self, model: nn.Module, rho: float):
        check_rho(rho)
        self.rho = rho
        self.params = [p for p in model.parameters() if p.requires_grad]
        self._steps: list[torch.Tensor] | None = None

    @torch.no_grad()
    def climb(self) -> None:
        """w -> w + rho * g / ||g||, from the gradients the last backward pass left."""
        if self._steps is not None:
            raise RuntimeError("climb() twice without return_back()")
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        scale = self.rho / (norm + 1e-12)
        self._steps = [(g.float() * scale).to(p.dtype) for g, p in zip(grads, self.params)]
        torch._foreach_add_(self.params, self._steps)

    @torch.no_grad()
    def return_back(self) -> None:
        """Undo climb(): the optimiser then steps the original weights with the gradient taken up there."""
        if self._steps is None:
            raise RuntimeError("return_back() without climb()")
        torch._foreach_sub_(self.params, self._steps)
        self._steps = None


@contextmanager
def frozen_batchnorm_statistics(model: nn.Module) -> Iterator[None]:
    """The second pass must not count the batch twice in the running mean and variance (momentum 0 leaves
    them as they are; the batch still normalises with its own statistics, as in training). The batch count
    is put back too, which cumulative averaging (momentum None) divides by."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            if count is not None:
                m.num_batches_tracked.copy_(count)
