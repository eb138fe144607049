"""Model zoo: ``create_model(name, num_classes, in_chans, input_size)`` builds any registered architecture.

One file per architecture family; ``checkpoint`` saves and loads weights with their ``ModelConfig``
(``config``), ``ensemble`` averages several checkpoints, ``pretrained`` adapts ImageNet weights. The names
below load on first use: importing ``ferkit.models.config`` (plain data) does not import torch.
"""
from __future__ import annotations

__all__ = ["create_model", "get_entry", "list_models", "register_model"]


def __getattr__(name: str):
    if name in __all__:
        from ferkit.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'ferkit.models' has no attribute {name!r}")
