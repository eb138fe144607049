"""Batch loops: the slices every batched pass (inference, evaluation, explanation, validation) walks."""
from __future__ import annotations

from typing import Iterator


def iter_batches(n: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most ``batch_size`` covering ``range(n)``."""
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))
