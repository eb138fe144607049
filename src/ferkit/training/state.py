"""Everything a run needs to continue exactly where it stopped, as one record: last.pt holds ``to_dict()``
beside the model's weights, and ``--resume`` reads it back with ``from_dict``.

The weights themselves are last.pt's ``state_dict``; the optimiser, the weight averages and the random number
generator are stored as their own state dicts, so the record is plain data and tensors and the checkpoint
loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ferkit.training.schedule import Plateau


@dataclass
class TrainState:
    plateau: Plateau
    epoch: int = 0  # epochs finished: the next one to run, counted from 0
    best: float = -1.0  # best score so far in the column best.pt is chosen on
    stale: int = 0  # epochs since that score last improved (what --early-stop counts)
    history: list[dict[str, float]] = field(default_factory=list)  # metrics.csv, one row per epoch
    optimizer: dict[str, Any] = field(default_factory=dict)
    ema: dict[str, Any] | None = None  # WeightAverage.state_dict() with --ema
    swa: dict[str, Any] | None = None  # EqualAverage.state_dict() with --swa, once it holds an epoch
    torch_rng: torch.Tensor | None = None

    def finish_epoch(self, row: dict[str, float], select_key: str) -> bool:
        """Count an epoch's metrics row; True when it is the best so far (best.pt is then rewritten)."""
        self.epoch += 1
        self.history.append(row)
        score = row.get(select_key)
        if score is None:  # with --swa, epochs before its average starts neither count nor go stale
            return False
        if score > self.best:
            self.best, self.stale = score, 0
            return True
        self.stale += 1
        return False

    def to_dict(self) -> dict[str, Any]:
        state = {"epoch": self.epoch, "best": self.best, "stale": self.stale, "plateau": self.plateau.state_dict(),
                 "history": self.history, "optimizer": self.optimizer, "torch_rng": self.torch_rng}
        for name in ("ema", "swa"):
            if getattr(self, name) is not None:
                state[name] = getattr(self, name)
        return state

    @classmethod
    def from_dict(cls, data: dict[str, Any], plateau: Plateau) -> TrainState:
        """``plateau`` is the run's fresh Plateau (patience and gamma come from the config); it takes the stored
        progress of the old one."""
        if "plateau" not in data:  # written before this record existed: flat, epoch counted from 0 as the last run
            data = {**data, "epoch": data["epoch"] + 1,
                    "plateau": {"scale": data["plateau_scale"], "best_loss": data["best_val_loss"], "stale": 0}}
        plateau.load_state_dict(data["plateau"])
        return cls(plateau=plateau, epoch=data["epoch"], best=data["best"], stale=data["stale"],
                   history=data["history"], optimizer=data["optimizer"], ema=data.get("ema"), swa=data.get("swa"),
                   torch_rng=data["torch_rng"])
