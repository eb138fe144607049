"""The model registry: one door in, ``create_model(name, num_classes, in_chans, input_size)``.

Each architecture file registers factory functions with ``@register_model``. A factory takes
``num_classes``, ``in_chans`` and ``input_size`` (plus its own keyword options) and returns an nn.Module.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch.nn as nn

from ferkit.errors import ModelError

# Modules that register architectures; imported on first use so `import ferkit` stays light.
_ARCH_MODULES = (
    "ferkit.models.baseline",
    "ferkit.models.fernet",
    "ferkit.models.vgg",
    "ferkit.models.resnet",
    "ferkit.models.densenet",
    "ferkit.models.mobilenet",
    "ferkit.models.efficientnet",
    "ferkit.models.inception",
    "ferkit.models.vit",
)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    factory: Callable[..., nn.Module]
    default_input_size: int  # the size `ferkit models` profiles at and training uses unless told otherwise
    default_in_chans: int
    description: str


_REGISTRY: dict[str, ModelEntry] = {}
_loaded = False


def register_model(
    name: str, *, default_input_size: int = 48, default_in_chans: int = 1, description: str = ""
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = description or (factory.__doc__ or "").strip().splitlines()[0] if factory.__doc__ else description
        _REGISTRY[name] = ModelEntry(name, factory, default_input_size, default_in_chans, doc or "")
        return factory

    return wrap


def _load_all() -> None:
    global _loaded
    if _loaded:
        return
    for module in _ARCH_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # a real missing dependency inside an architecture file
                raise
    _loaded = True


def list_models() -> list[ModelEntry]:
    _load_all()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get_entry(name: str) -> ModelEntry:
    _load_all()
    if name not in _REGISTRY:
        raise ModelError(f"unknown model {name!r}; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def create_model(
    name: str, num_classes: int = 7, in_chans: int = 1, input_size: int | None = None, **kwargs
) -> nn.Module:
    """Build architecture ``name`` for ``num_classes`` outputs on ``in_chans`` x ``input_size``^2 inputs."""
    entry = get_entry(name)
    size = input_size or entry.default_input_size
    return entry.factory(num_classes=num_classes, in_chans=in_chans, input_size=size, **kwargs)
