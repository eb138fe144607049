"""Model zoo: ``create_model(name, num_classes, in_chans, input_size)`` builds any registered architecture.

One file per architecture family; ``checkpoint`` saves and loads weights with their ``ModelConfig``
(``config``), ``ensemble`` averages several checkpoints, ``pretrained`` adapts ImageNet weights. The names
below load on first use: importing ``ferkit.models.config`` (plain data) does not import torch.
"""
from __future__ import annotations

from ferkit.lazy import lazy_exports

_PUBLIC = {name: "ferkit.models.registry" for name in ("create_model", "get_entry", "list_models", "register_model")}

__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
