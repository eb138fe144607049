"""The optimiser and its learning rate.

The rate of every step is ``cfg.lr * lr_factor(cfg, step, steps_per_epoch, plateau.scale)``, set by the loop
before each step. ``lr_factor`` is a pure function of the step for every schedule but plateau, whose scale is
the one piece of state: a Plateau, stepped once per epoch with the validation loss.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from ferkit.training.config import TrainConfig


def make_optimizer(cfg: TrainConfig, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise AssertionError(cfg.optimizer)  # check_config refuses unknown names


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int, plateau_scale: float = 1.0) -> float:
    """The learning rate at ``step`` (counted from the run's start) as a multiple of cfg.lr. ``plateau_scale``
    is Plateau.scale; only the plateau schedule reads it."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        # Smith's one-cycle: warm up from lr/25 over the first 30% (or warmup_epochs), cosine to ~0.
        warm = max(1, int(steps_per_epoch * cfg.warmup_epochs) if cfg.warmup_epochs else int(0.3 * total))
        if step < warm:
            return 0.04 + 0.96 * step / warm
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))
    warm = int(steps_per_epoch * cfg.warmup_epochs)
    warmup = min(1.0, (step + 1) / warm) if warm else 1.0
    if cfg.schedule == "cosine":
        progress = max(0.0, (step - warm) / max(1, total - warm))
        return warmup * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if cfg.schedule == "step":
        return warmup * cfg.gamma ** (step // steps_per_epoch // cfg.step_size)
    if cfg.schedule == "plateau":
        return warmup * plateau_scale
    if cfg.schedule == "constant":
        return warmup
    raise AssertionError(cfg.schedule)  # check_config refuses unknown names


@dataclass
class Plateau:
    """Reduce on plateau: after ``patience`` epochs in a row whose validation loss is not below the best so far
    by more than ``min_delta``, multiply ``scale`` by ``gamma`` and start counting again (a plateau that goes on
    decays the rate once every ``patience`` epochs)."""

    patience: int
    gamma: float
    min_delta: float = 1e-4  # in mean cross-entropy: a smaller fall is noise, not progress
    scale: float = 1.0
    best_loss: float = math.inf
    stale: int = 0

    def step(self, val_loss: float) -> None:
        if val_loss < self.best_loss - self.min_delta:
            self.best_loss, self.stale = val_loss, 0
            return
        self.stale += 1
        if self.stale >= self.patience:
            self.scale *= self.gamma
            self.stale = 0

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale, "best_loss": self.best_loss, "stale": self.stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale, self.best_loss, self.stale = state["scale"], state["best_loss"], state["stale"]
