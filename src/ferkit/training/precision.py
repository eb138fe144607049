"""Mixed precision: which autocast dtype a run uses, and the one autocast context every forward pass shares
(the training step, SAM's second pass, SWA's batch-norm pass, a distillation teacher)."""
from __future__ import annotations

from pathlib import Path

import torch


def cpu_has_native_bf16() -> bool:
    """bf16 autocast only pays on CPUs with bf16 instructions: on this project's AVX2-only EPYC it ran
    10x slower than fp32 (BENCHMARKS.md), so "auto" picks it only where the hardware has it."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_native_bf16() else None


def mixed_precision(device: torch.device, amp_dtype: torch.dtype | None) -> torch.autocast:
    """The autocast context for a forward pass (a no-op when ``amp_dtype`` is None: fp32)."""
    return torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None)
