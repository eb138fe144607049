"""The torch device a model runs on: "auto" resolved to the best one present, and a name this machine cannot
run refused with a clear message before any model is built (torch would fail later, with a traceback)."""
from __future__ import annotations

from typing import Any

from ferkit.errors import FerkitError


def resolve_device(device: Any = "auto") -> str:
    """``device`` ("auto", "cpu", "cuda", "cuda:N", "mps" or a torch.device) as a device string torch can use."""
    import torch

    if str(device) == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise FerkitError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise FerkitError(f"device {str(device)!r}: no CUDA device is visible to torch; use cpu (or auto)")
        if parsed.index is not None and parsed.index >= count:
            raise FerkitError(f"device {str(device)!r}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    if parsed.type == "mps" and not (getattr(torch.backends, "mps", None) is not None
                                     and torch.backends.mps.is_available()):
        raise FerkitError(f"device {str(device)!r}: Apple's MPS backend is not available here; use cpu (or auto)")
    return str(device)
