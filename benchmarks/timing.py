"""Wall-clock timing shared by the benchmark scripts (imported from the script folder, also inside the `fer`
virtualenv that bench_predict's worker runs in, so it uses the standard library only)."""
from __future__ import annotations

import statistics
import time


def timed(fn, repeats: int, warmup: int = 2) -> list[float]:
    """[median, best] wall time of ``fn()`` in milliseconds. On a shared machine the best run is the one
    least disturbed by other work; the median shows what a user sees under that load."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return [statistics.median(times), min(times)]
