"""Averages of a model's weights along training: an exponential moving average updated after every
optimiser step (``--ema``), and stochastic weight averaging (``--swa``), the plain mean of the weights at the
end of each of a run's last epochs.

The average of the weights along the end of a run usually generalises a little better than the last
weights and moves less from epoch to epoch, so the epoch that validation picks depends less on luck.
The moving average averages batch-norm running statistics like the weights; the plain mean recomputes them
(``recompute_batchnorm``), since the statistics of averaged weights are not the average of the statistics.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

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

    def _decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self._decay()
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


class EqualAverage(WeightAverage):
    """The plain mean of every set of weights passed to ``update`` (stochastic weight averaging, Izmailov et
    al. 2018): the n-th update moves the mean 1/n of the way to the new weights. Call
    ``recompute_batchnorm`` on ``module`` before using it."""

    def __init__(self, model: nn.Module):
        super().__init__(model, 0.0)

    def _decay(self) -> float:
        return 1.0 - 1.0 / self.updates


def check_swa(epochs: int, swa: int, ema: float) -> None:
    if not 0 <= swa <= epochs:
        raise FerkitError(f"--swa is how many of the run's last epochs to average, 0 to {epochs} (--epochs); got {swa}")
    if swa and ema:
        raise FerkitError("--swa and --ema both choose which average best.pt holds; use one of them")


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Replace the batch-norm running statistics of ``model`` with exact means over ``batches`` (run any
    autocast context around the call). torch's update_bn does the bookkeeping."""
    from torch.optim.swa_utils import update_bn

    update_bn(batches, model)
    model.eval()
