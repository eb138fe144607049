"""Model size and cost: parameter counts and FLOPs of one forward pass.

FLOPs follow the convention of papers and torchvision's model tables: one multiply-accumulate counts as 2
FLOPs (so a ResNet-50 at 224 px is ~8.2 GFLOPs = ~4.1 GMACs). They are measured with
``torch.utils.flop_counter.FlopCounterMode`` on a batch of one, which counts convolutions, matrix products
and attention; batch norm, activations, pooling and element-wise additions are not counted (a few percent
at most for these networks).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode


def _sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    # Q @ K^T and softmax(.) @ V: two batched matrix products.
    b, h, s_q, d = query_shape
    s_k, d_v = key_shape[-2], value_shape[-1]
    return 2 * b * h * s_q * s_k * d + 2 * b * h * s_q * s_k * d_v


def _custom_flop_formulas() -> dict[Any, Any]:
    # PyTorch's counter has no formula for the CPU flash-attention kernel SDPA dispatches to on CPU.
    op = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
    return {op: _sdpa_flops} if op is not None else {}


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter values (not buffers such as batch-norm statistics)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_flops(model: nn.Module, in_chans: int = 1, input_size: int = 48) -> int:
    """FLOPs (2 x multiply-accumulates) of one eval-mode forward pass on a 1 x in_chans x size x size input.

    Runs on the model's device; a model built on the ``meta`` device is counted without computing anything.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    x = torch.zeros(1, in_chans, input_size, input_size, device=device, dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=_custom_flop_formulas()) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


@dataclass
class ModelProfile:
    name: str
    input_size: int
    in_chans: int
    num_classes: int
    params: int
    flops: int

    @property
    def gflops(self) -> float:
        return self.flops / 1e9

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gflops": round(self.gflops, 4)}


def profile_model(name: str, input_size: int | None = None, in_chans: int | None = None,
                  num_classes: int = 7, **kwargs) -> ModelProfile:
    """Parameters and FLOPs of registered model ``name``, built without allocating weights where possible."""
    from ferkit.models.registry import create_model, get_entry

    entry = get_entry(name)
    size = input_size or entry.default_input_size
    chans = in_chans or entry.default_in_chans
    try:
        # On the meta device nothing is allocated or computed: ViT-B or VGG-16 profile in milliseconds.
        with torch.device("meta"):
            model = create_model(name, num_classes=num_classes, in_chans=chans, input_size=size, **kwargs)
        flops = count_flops(model, chans, size)
    except (NotImplementedError, RuntimeError):
        model = create_model(name, num_classes=num_classes, in_chans=chans, input_size=size, **kwargs)
        flops = count_flops(model, chans, size)
    return ModelProfile(name, size, chans, num_classes, count_parameters(model), flops)
