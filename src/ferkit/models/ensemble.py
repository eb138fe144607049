"""Ensembles: several trained checkpoints saved as one checkpoint that averages their probabilities.

An ensemble is an ordinary ferkit checkpoint (``arch: "ensemble"``, the members' configs in ``model_kwargs``,
their weights under ``members.<i>.``), so everything that takes a model (evaluate, predict, explain, export,
the Recognizer) takes an ensemble unchanged::

    ferkit ensemble runs/a/best.pt runs/b/best.pt --out ensemble.pt
    ferkit evaluate --data fer2013.zip --model ensemble.pt

Fine-tunes of one base can instead be merged into one network of the same size (``average_weights``: a
weight average, "model soup", or an interpolation between a fine-tune and its base, WiSE-FT), which costs one
network's time at inference instead of one per member.
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
    from ferkit.models.checkpoint import ModelConfig, save_checkpoint
    from ferkit.transforms.views import check_tta

    if len(specs) < 2:
        raise ModelError(f"an ensemble needs at least two checkpoints; got {len(specs)}")
    if tta is not None:
        check_tta(tta)
    ckpts, configs = _load_matching(specs, _MUST_MATCH, f"ensemble members must share {', '.join(_MUST_MATCH)}")
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
        "members": [_member_record(s, c) for s, c in zip(specs, ckpts)],
    }
    save_checkpoint(out, model, config, meta=meta)
    return Path(out)


def weight_shares(count: int, mix: Sequence[float] | None = None) -> list[float]:
    """Each of ``count`` checkpoints' share in a weight average: ``mix`` checked, or equal shares."""
    if count < 2:
        raise ModelError(f"a weight average needs at least two checkpoints; got {count}")
    shares = [1.0 / count] * count if mix is None else [float(m) for m in mix]
    if len(shares) != count:
        raise ModelError(f"--mix has {len(shares)} shares for {count} checkpoints")
    if any(not math.isfinite(m) or m < 0 for m in shares) or abs(sum(shares) - 1.0) > 1e-6:
        raise ModelError(f"--mix shares must be non-negative and sum to 1; got {', '.join(map(str, shares))}")
    return shares


def average_weights(specs: Sequence[str | Path], out: str | Path, *, mix: Sequence[float] | None = None,
                    tta: str | None = None) -> Path:
    """Write one checkpoint whose weights are the ``mix``-weighted mean of the checkpoints ``specs``.

    Meant for fine-tunes of one base (they stay in its basin, where a straight line between weights keeps the
    loss low): ``mix`` defaults to equal shares and must sum to 1; ``[0.7, 0.3]`` of a fine-tune and its base
    is 70% of the way from the base to the fine-tune. Batch-norm statistics are averaged with the same shares,
    counters are the first checkpoint's. Everything else (config, labels, TTA unless ``tta``) is the first's.
    """
    from dataclasses import replace

    from ferkit.models.checkpoint import build_model, save_checkpoint
    from ferkit.transforms.views import check_tta

    shares = weight_shares(len(specs), mix)
    if tta is not None:
        check_tta(tta)
    ckpts, configs = _load_matching(specs, ("arch", "model_kwargs", *_MUST_MATCH),
                                    "a weight average needs one architecture")
    first, states = configs[0], [c["state_dict"] for c in ckpts]
    for spec, state in zip(specs[1:], states[1:]):
        if state.keys() != states[0].keys() or any(v.shape != states[0][k].shape for k, v in state.items()):
            raise ModelError(f"{spec} and {specs[0]} hold different tensors; a weight average needs one "
                             "architecture")
    merged = {}
    for key, first_value in states[0].items():
        if first_value.is_floating_point():
            merged[key] = sum(m * s[key].double() for m, s in zip(shares, states)).to(first_value.dtype)
        else:  # num_batches_tracked and other counters
            merged[key] = first_value.clone()
    if tta is not None:
        first = replace(first, tta=tta)
    model = build_model(first)
    model.load_state_dict(merged)
    mix_text = ",".join(f"{m:g}" for m in shares)
    meta = {
        "command": "ferkit ensemble --weight-average --mix " + mix_text + " "
                   + " ".join(str(s) for s in specs) + f" --out {out}",
        "members": [{**_member_record(s, c), "share": m} for s, m, c in zip(specs, shares, ckpts)],
    }
    save_checkpoint(out, model, first, meta=meta)
    return Path(out)


def _load_matching(specs: Sequence[str | Path], keys: Sequence[str], rule: str) -> tuple[list[dict], list[Any]]:
    """The checkpoints ``specs`` and their configs; ModelError naming the first config field in ``keys`` that
    differs from the first checkpoint's, followed by ``rule``."""
    from ferkit.models.checkpoint import ModelConfig, load_checkpoint

    ckpts = [load_checkpoint(s) for s in specs]
    configs = [ModelConfig.from_dict(c["config"]) for c in ckpts]
    for spec, cfg in zip(specs[1:], configs[1:]):
        for key in keys:
            if getattr(cfg, key) != getattr(configs[0], key):
                raise ModelError(f"{spec} has {key}={getattr(cfg, key)!r} but {specs[0]} has "
                                 f"{getattr(configs[0], key)!r}; {rule}")
    return ckpts, configs


def _member_record(spec: str | Path, ckpt: dict) -> dict:
    """What a combined checkpoint's meta keeps of each member: its source and training record."""
    return {"source": str(spec), **{k: ckpt["meta"][k] for k in ("command", "epoch", "metrics", "name")
                                    if k in ckpt["meta"]}}
