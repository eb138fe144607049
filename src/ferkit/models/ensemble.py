"""Ensembles: several trained checkpoints saved as one checkpoint that averages their probabilities.

An ensemble is an ordinary ferkit checkpoint (``arch: "ensemble"``, the members' configs in ``model_kwargs``,
their weights under ``members.<i>.``), so everything that takes a model (evaluate, predict, explain, export,
the Recognizer) takes an ensemble unchanged::

    ferkit ensemble runs/a/best.pt runs/b/best.pt --out ensemble.pt
    ferkit evaluate --data fer2013.zip --model ensemble.pt
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.errors import ModelError

ARCH = "ensemble"
# Members must see the same face crop and predict the same classes; normalisation and temperature may differ.
_MUST_MATCH = ("num_classes", "in_chans", "input_size", "labels", "crop_margin", "face_crop")


class Ensemble(nn.Module):
    """Mean of the members' temperature-scaled probabilities, returned as log-probabilities: softmax of the
    output is exactly that mean, so the ensemble plugs in wherever a model's logits go."""

    def __init__(self, members: Sequence[nn.Module], member_configs: Sequence[Any], mean: Sequence[float],
                 std: Sequence[float]):
        super().__init__()
        self.members = nn.ModuleList(members)
        # The input arrives normalised with the ensemble's mean/std; each member gets its own normalisation.
        shape = (1, -1, 1, 1)
        self.register_buffer("_mean", torch.tensor(mean, dtype=torch.float32).view(shape), persistent=False)
        self.register_buffer("_std", torch.tensor(std, dtype=torch.float32).view(shape), persistent=False)
        self._member_norm = [(torch.tensor(c.mean, dtype=torch.float32).view(shape),
                              torch.tensor(c.std, dtype=torch.float32).view(shape)) for c in member_configs]
        self._same_norm = [list(c.mean) == list(mean) and list(c.std) == list(std) for c in member_configs]
        self.temperatures = [float(c.temperature) for c in member_configs]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = []
        for member, (m_mean, m_std), same, t in zip(self.members, self._member_norm, self._same_norm,
                                                     self.temperatures):
            xm = x if same else (x * self._std + self._mean - m_mean.to(x)) / m_std.to(x)
            log_probs.append(F.log_softmax(member(xm).float() / t, dim=1))
        return torch.logsumexp(torch.stack(log_probs), dim=0) - math.log(len(log_probs))


def build_ensemble(config: Any) -> Ensemble:
    from ferkit.models.checkpoint import ModelConfig, build_model

    member_configs = [ModelConfig.from_dict(d) for d in config.model_kwargs["members"]]
    return Ensemble([build_model(c) for c in member_configs], member_configs, config.mean, config.std)


def combine_checkpoints(specs: Sequence[str | Path], out: str | Path, *, tta: str | None = None,
                        half: bool = False) -> Path:
    """Write the ensemble of the checkpoints ``specs`` (files or shipped names) to ``out``.

    The ensemble's inference TTA is ``tta`` or else the first member's; its temperature starts at 1 (each
    member keeps its own). ``half`` stores the weights as float16, halving the file; they load back as float32.
    """
    from ferkit.models.checkpoint import ModelConfig, load_checkpoint, save_checkpoint
    from ferkit.transforms.views import check_tta

    if len(specs) < 2:
        raise ModelError(f"an ensemble needs at least two checkpoints; got {len(specs)}")
    if tta is not None:
        check_tta(tta)
    ckpts = [load_checkpoint(s) for s in specs]
    configs = [ModelConfig.from_dict(c["config"]) for c in ckpts]
    for spec, cfg in zip(specs[1:], configs[1:]):
        for key in _MUST_MATCH:
            if getattr(cfg, key) != getattr(configs[0], key):
                raise ModelError(
                    f"{spec} has {key}={getattr(cfg, key)!r} but {specs[0]} has {getattr(configs[0], key)!r}; "
                    f"ensemble members must share {', '.join(_MUST_MATCH)}"
                )
    first = configs[0]
    config = ModelConfig(
        arch=ARCH, num_classes=first.num_classes, in_chans=first.in_chans, input_size=first.input_size,
        labels=list(first.labels), mean=list(first.mean), std=list(first.std),
        model_kwargs={"members": [c.to_dict() for c in configs]}, tta=tta or first.tta, temperature=1.0,
        crop_margin=first.crop_margin, face_crop=first.face_crop,
    )
    model = build_ensemble(config)
    state = {f"members.{i}.{k}": v for i, c in enumerate(ckpts) for k, v in c["state_dict"].items()}
    model.load_state_dict(state)
    if half:
        model.half()
    meta = {
        "command": "ferkit ensemble " + " ".join(str(s) for s in specs) + f" --out {out}",
        "members": [{"source": str(s), **{k: c["meta"][k] for k in ("command", "epoch", "metrics", "name")
                                          if k in c["meta"]}} for s, c in zip(specs, ckpts)],
    }
    save_checkpoint(out, model, config, meta=meta)
    return Path(out)
