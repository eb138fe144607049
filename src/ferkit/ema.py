"""An exponential moving average of a model's weights, updated after every optimiser step.

The average of the weights along the end of a run usually generalises a little better than the last
weights and moves less from epoch to epoch, so the epoch that validation picks depends less on luck.
Batch-norm running statistics are averaged like the weights; the step counter is copied.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn

from ferkit.errors import FerkitError


def check_decay(decay: float) -> None:
    if not 0.0 <= decay < 1.0:
        raise FerkitError(f"--ema must be in [0, 1) (a decay per step such as 0.9995; 0 switches it off), got {decay}")


class WeightAverage:
    """Keeps ``decay``-weighted running averages of ``model``'s parameters and buffers in a copy of it.

    Early on the decay is capped at (1 + n) / (10 + n) after n updates, so the average is not dominated by
    the random initial weights when a run is short.
    """

    def __init__(self, model: nn.Module, decay: float):
        check_decay(decay)
        self.decay = decay
        self.updates = 0
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def _pairs(self, model: nn.Module):
        mine = self.module.state_dict()
        theirs = model.state_dict()
        return [(mine[k], theirs[k]) for k in mine]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        floats, sources, others = [], [], []
        for avg, cur in self._pairs(model):
            if avg.is_floating_point():
                floats.append(avg)
                sources.append(cur.detach())
            else:
                others.append((avg, cur))
        if floats:
            torch._foreach_lerp_(floats, sources, 1.0 - d)  # avg += (1 - d) * (cur - avg), one fused call
        for avg, cur in others:
            avg.copy_(cur)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "weights": self.module.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay, self.updates = state["decay"], state["updates"]
        self.module.load_state_dict(state["weights"])
