"""Transfer learning helpers: load an ImageNet state dict into a ferkit model, freeze its first blocks.

What a model may declare (all optional; the torchvision-compatible families declare all of them):

- ``pretrained_cfg = {"first_conv": "conv1", "classifier": "fc", "optional": (...)}`` as a class attribute,
  as timm does. ``first_conv`` names the input convolution (adapted to the input channel count);
  ``classifier`` one module name or a tuple of them (replaced when the class count differs); ``optional``
  key prefixes that either side may lack (e.g. Inception's auxiliary head). Plain class attributes
  ``first_conv`` / ``classifier`` holding strings are read too.
- ``layer_groups() -> list[list[str]]``: the model's blocks in input-to-output order, each a list of module
  or parameter names. ``freeze_blocks`` freezes the first N. Models without it are split into their
  parameterised layers (top-level children, looking inside ``nn.Sequential`` containers).
- ``adapt_pretrained(state_dict) -> state_dict``: family-specific fixes applied to a file before the generic
  ones (DenseNet's legacy key names, ViT's position-embedding grid).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ferkit.models.checkpoint import load_state_dict_checked
from ferkit.errors import ModelError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_normalization(in_chans: int) -> tuple[list[float], list[float]]:
    """Mean and std to feed an ImageNet-initialised model ``in_chans`` channels.

    With the first conv summed over RGB, a grey pixel must be normalised as the RGB channels were on average.
    """
    if in_chans == 1:
        return [sum(IMAGENET_MEAN) / 3], [sum(IMAGENET_STD) / 3]
    return [IMAGENET_MEAN[i % 3] for i in range(in_chans)], [IMAGENET_STD[i % 3] for i in range(in_chans)]


@dataclass
class PretrainedReport:
    """What ``load_pretrained`` did with each tensor."""

    source: str
    loaded: list[str] = field(default_factory=list)  # copied unchanged
    adapted: list[str] = field(default_factory=list)  # reshaped to fit: first conv, position embeddings
    reinitialised: list[str] = field(default_factory=list)  # the model's own init kept: new classifier, new parts
    dropped: list[str] = field(default_factory=list)  # in the file, unused by this model


def pretrained_cfg(model: nn.Module) -> dict[str, Any]:
    """The model's ``first_conv`` / ``classifier`` / ``optional`` declarations, with defaults."""
    cfg = dict(getattr(type(model), "pretrained_cfg", {}) or {})
    for key in ("first_conv", "classifier"):
        value = type(model).__dict__.get(key)
        if key not in cfg and isinstance(value, (str, tuple)):
            cfg[key] = value
    classifier = cfg.get("classifier", ())
    cfg["classifier"] = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    cfg["optional"] = tuple(cfg.get("optional", ()))
    return cfg


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a weights file: a raw state dict, or one wrapped as {"state_dict": ...} / {"model": ...}."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"pretrained weights file {str(path)!r} not found; give a local state-dict file, "
                         "e.g. torchvision's resnet18-f37072fd.pth")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or pickled-object files
        from ferkit.models.checkpoint import unreadable_reason

        # Not torch's message: it advises weights_only=False, the one unsafe thing to do with a foreign file.
        raise ModelError(f"{path} is not a readable weights file: {unreadable_reason(path, exc)}") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ModelError(f"{path} does not hold a state dict (a dict of tensors, possibly under 'state_dict' "
                         "or 'model')")
    # Files saved from DistributedDataParallel or torch.compile prefix every key.
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in obj):
            obj = {k[len(prefix):]: v for k, v in obj.items()}
    return dict(obj)


def adapt_input_conv(weight: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Fit a (out, c, kh, kw) first-conv kernel to ``in_chans`` inputs.

    One channel: sum over the file's channels, so a grey image gives the response the RGB image with equal
    channels gave. Other counts: cycle the file's channels and rescale so activations keep their magnitude.
    """
    if in_chans == 1:
        return weight.sum(dim=1, keepdim=True)
    src = weight.shape[1]
    repeated = weight.repeat(1, math.ceil(in_chans / src), 1, 1)[:, :in_chans]
    return repeated * (src / in_chans)


def load_pretrained(model: nn.Module, path: str | Path, in_chans: int | None = None,
                    num_classes: int | None = None) -> PretrainedReport:
    """Load an ImageNet (or any compatible) state dict into ``model``, adapting what can be adapted.

    The first conv is summed to one channel (or cycled) for ``in_chans`` != the file's; classifier layers
    are left freshly initialised when the file has another class count; ViT position embeddings are
    interpolated to the model's grid. Anything else that does not fit raises ModelError naming the keys.
    ``in_chans`` / ``num_classes`` are checked against the model when given.
    """
    source = str(path)
    state = read_state_dict(path)
    report = PretrainedReport(source)
    if callable(getattr(model, "adapt_pretrained", None)):
        shapes = {k: v.shape for k, v in state.items()}
        state = model.adapt_pretrained(state)
        report.adapted += [k for k, v in state.items() if k in shapes and v.shape != shapes[k]]
    own = model.state_dict()
    cfg = pretrained_cfg(model)

    first = cfg.get("first_conv")
    if first and f"{first}.weight" in own:
        key = f"{first}.weight"
        model_chans = own[key].shape[1]
        if in_chans is not None and in_chans != model_chans:
            raise ModelError(f"in_chans={in_chans} but {type(model).__name__}'s first conv ({first}) takes "
                             f"{model_chans} channels; build the model with in_chans={in_chans}")
        file_w = state.get(key)
        if file_w is not None and file_w.ndim == 4 and file_w.shape[1] != model_chans \
                and file_w.shape[0] == own[key].shape[0] and file_w.shape[2:] == own[key].shape[2:]:
            state[key] = adapt_input_conv(file_w, model_chans).to(file_w.dtype)
            report.adapted.append(key)

    heads = cfg["classifier"]
    if num_classes is not None and heads and f"{heads[0]}.weight" in own:
        model_classes = own[f"{heads[0]}.weight"].shape[0]
        if model_classes != num_classes:
            raise ModelError(f"num_classes={num_classes} but {type(model).__name__}'s classifier ({heads[0]}) has "
                             f"{model_classes} outputs; build the model with num_classes={num_classes}")
    for head in heads:
        weight = f"{head}.weight"
        if weight in state and weight in own and state[weight].shape[0] != own[weight].shape[0] \
                and state[weight].shape[1:] == own[weight].shape[1:]:
            for key in [k for k in own if k.startswith(f"{head}.")]:
                state[key] = own[key]
                report.reinitialised.append(key)

    optional = cfg["optional"]
    for key in list(state):
        if key not in own and optional and key.startswith(optional):
            del state[key]
            report.dropped.append(key)
    for key, value in own.items():
        if key in state:
            continue
        if optional and key.startswith(optional):
            state[key] = value
            report.reinitialised.append(key)
        elif key.endswith("num_batches_tracked"):
            state[key] = value  # files from before PyTorch 0.4.1 lack these counters

    touched = set(report.adapted) | set(report.reinitialised)
    report.loaded = [k for k in own if k in state and k not in touched]
    load_state_dict_checked(model, state, source=source)
    log.info("loaded %d tensors from %s; adapted %s; new %s; unused %d", len(report.loaded), source,
             report.adapted or "none", sorted({k.rsplit(".", 1)[0] for k in report.reinitialised}) or "none",
             len(report.dropped))
    return report


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def _parameterised_layers(module: nn.Module, prefix: str = "") -> list[str]:
    names = []
    for name, child in module.named_children():
        if isinstance(child, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
            names += _parameterised_layers(child, f"{prefix}{name}.")
        elif any(True for _ in child.parameters()):
            names.append(prefix + name)
    return names


def layer_groups(model: nn.Module) -> list[list[str]]:
    """The model's blocks, input to output: its own ``layer_groups()`` or its parameterised layers."""
    model = _unwrap(model)
    if callable(getattr(model, "layer_groups", None)):
        return model.layer_groups()
    return [[name] for name in _parameterised_layers(model)]


def freeze_blocks(model: nn.Module, n: int) -> list[str]:
    """Stop gradients for the first ``n`` blocks; batch-norm layers inside them stay trainable.

    Batch norm stays trainable so its statistics and affine terms can follow the new domain (grey faces
    instead of ImageNet photos), the usual practice for partial fine-tuning. Returns the frozen parameter
    names. ``n`` may be at most the block count minus one: the classifier always trains.
    """
    model = _unwrap(model)
    groups = layer_groups(model)
    if not 0 <= n < len(groups):
        shown = ", ".join("+".join(g) for g in groups[:8]) + (", ..." if len(groups) > 8 else "")
        raise ModelError(f"cannot freeze {n} blocks of {type(model).__name__}: it has {len(groups)} blocks "
                         f"({shown}); give 0 to {len(groups) - 1} so the classifier stays trainable")
    frozen: list[str] = []
    for group in groups[:n]:
        for name in group:
            try:
                target = model.get_submodule(name)
            except AttributeError:
                param = model.get_parameter(name)
                param.requires_grad_(False)
                frozen.append(name)
                continue
            for sub_name, sub in target.named_modules(prefix=name):
                if isinstance(sub, _BatchNorm):
                    continue
                for p_name, param in sub.named_parameters(recurse=False):
                    param.requires_grad_(False)
                    frozen.append(f"{sub_name}.{p_name}")
    return frozen
