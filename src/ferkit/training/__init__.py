"""Training: ``train(TrainConfig(...), dataset)`` is what ``ferkit train`` runs.

Where things are:

- ``loop``: ``train``, ``run`` (the loop itself, top to bottom), ``train_step`` and ``end_of_epoch``
- ``config``: ``TrainConfig``, the named ``RECIPES``, ``check_config``
- ``schedule``: the optimiser, ``lr_factor`` (the learning rate of every step) and ``Plateau``
- ``batches``: the augmented, mixed training batches, drawn reproducibly per epoch
- ``state``: ``TrainState``, everything ``--resume`` continues from (last.pt)
- ``distributed``: torchrun (process group, device per process, DistributedDataParallel)
- ``sam``, ``averaging`` (EMA, SWA), ``distill`` (teachers), ``precision`` (autocast): what a step can add

The names below are imported on first use, so ``import ferkit.training`` stays cheap.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {"train": "loop", "run": "loop", "TrainingDiverged": "loop", "TrainConfig": "config",
            "RECIPES": "config", "check_config": "config"}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
