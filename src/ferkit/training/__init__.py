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

from ferkit.lazy import lazy_exports

_PUBLIC = {"train": "ferkit.training.loop", "run": "ferkit.training.loop", "TrainingDiverged": "ferkit.training.loop",
           "TrainConfig": "ferkit.training.config", "RECIPES": "ferkit.training.config",
           "check_config": "ferkit.training.config"}

__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
