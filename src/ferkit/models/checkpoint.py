"""Checkpoints: weights plus the model's own config, loadable with ``torch.load(weights_only=True)``.

A checkpoint file is a dict of tensors and plain data only::

    {"format": "ferkit", "version": 1, "config": ModelConfig.to_dict(), "state_dict": {...},
     "meta": {...plain data: training command, metrics...}, "train_state": {...} (last.pt only)}

``load_model("default")`` (or "fast", "robust") loads a model shipped in ``ferkit/weights``. Weights may be stored
as float16 (halving the file); they load into float32 models.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from ferkit.devices import resolve_device
from ferkit.errors import ModelError
from ferkit.models.config import ModelConfig
from ferkit.paths import SHIPPED_MODELS, WEIGHTS_DIR, atomic_write

FORMAT = "ferkit"
VERSION = 1


def build_model(config: ModelConfig) -> nn.Module:
    from ferkit.models import create_model

    if config.arch == "ensemble":  # not an architecture: members built from their own configs
        from ferkit.models.ensemble import build_ensemble

        return build_ensemble(config)

    return create_model(
        config.arch, num_classes=config.num_classes, in_chans=config.in_chans, input_size=config.input_size,
        **config.model_kwargs,
    )


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig, meta: dict | None = None,
                    train_state: dict | None = None) -> None:
    """Write atomically: a crash mid-write leaves the previous file intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    model = getattr(model, "_orig_mod", model)  # unwrap torch.compile
    payload: dict[str, Any] = {
        "format": FORMAT, "version": VERSION, "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": meta or {},
    }
    if train_state is not None:
        payload["train_state"] = train_state
    with atomic_write(path) as f:
        torch.save(payload, f)


def resolve_checkpoint(spec: str | Path) -> Path:
    """A shipped model name (see SHIPPED_MODELS) or a path to a .pt file."""
    if str(spec) in SHIPPED_MODELS:
        path = WEIGHTS_DIR / f"{spec}.pt"
        if not path.exists():
            raise ModelError(f"the shipped model {spec!r} is not in this installation ({path} is missing)")
        return path
    path = Path(spec)
    if not path.exists():
        raise ModelError(
            f"checkpoint {str(spec)!r} not found; give a .pt file written by `ferkit train` "
            f"or one of the shipped models: {', '.join(SHIPPED_MODELS)}"
        )
    return path


def load_checkpoint(spec: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(spec)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise ModelError(f"{path} is not a readable ferkit checkpoint: {exc}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelError(f"{path} is not a ferkit checkpoint (no 'format': 'ferkit' entry)")
    return ckpt


def load_model(spec: str | Path = "default", device: str | torch.device = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Build the checkpoint's architecture, load its weights, put it in eval mode on ``device``."""
    device = resolve_device(device)
    ckpt = load_checkpoint(spec)
    config = ModelConfig.from_dict(ckpt["config"])
    model = build_model(config)
    load_state_dict_checked(model, ckpt["state_dict"], source=str(spec))
    # Inference batches arrive channels-last (faces_to_tensor); matching weights spare oneDNN a layout conversion
    # per convolution, about 2x on CPU for the small CNNs.
    model.eval().to(device, memory_format=torch.channels_last)
    return model, config


def load_state_dict_checked(model: nn.Module, state_dict: dict[str, torch.Tensor], source: str) -> None:
    """Load weights, naming the missing, unexpected and mis-shaped keys when they do not match."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k}: {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_few(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches {_few(shapes)}")
        raise ModelError(f"weights in {source} do not fit {type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(state_dict)


def _few(items: list[str], n: int = 5) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")
