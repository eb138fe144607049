"""Cost of one explanation per face, relative to one forward pass, at default settings.

    OMP_NUM_THREADS=1 python benchmarks/bench_explain.py [--arch baseline_cnn ...] [--model default] [--batch 32]

For each model: the best wall time over repeats (the least disturbed by other processes on a shared CPU;
ratios to the forward pass are the stable part) of a plain forward pass (inference mode) and of Grad-CAM, saliency,
SmoothGrad (25 samples) and occlusion sensitivity (default patch and stride), for one face at a time and
per face in a batch. Prints a Markdown table for BENCHMARKS.md. Models use random weights unless a
checkpoint is given (speed does not depend on the weights).
"""
from __future__ import annotations

import argparse
import platform
import time
from typing import Callable

import torch

from ferkit.analysis.explain import default_patch, gradcam, occlusion_sensitivity, saliency, smoothgrad


def best_seconds(fn: Callable[[], object], repeats: int, min_time: float = 0.3) -> float:
    fn()  # warm-up: allocator, lazy init
    times = []
    start = time.perf_counter()
    while len(times) < repeats or (time.perf_counter() - start < min_time and len(times) < 50):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench(name: str, model: torch.nn.Module, in_chans: int, size: int, batch: int, repeats: int) -> list[str]:
    model.eval()
    rows = []
    for n in (1, batch):
        x = torch.randn(n, in_chans, size, size).contiguous(memory_format=torch.channels_last)

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        methods: dict[str, Callable[[], object]] = {
            "forward": forward,
            "gradcam": lambda: gradcam(model, x),
            "saliency": lambda: saliency(model, x),
            "smoothgrad": lambda: smoothgrad(model, x),
            "occlusion": lambda: occlusion_sensitivity(model, x),
        }
        base = None
        for method, fn in methods.items():
            reps = repeats if method not in ("smoothgrad", "occlusion") else max(3, repeats // 4)
            per_face = best_seconds(fn, reps) / n
            base = base or per_face
            rows.append(f"| {name} | {size} | {n} | {method} | {per_face * 1e3:.2f} | {per_face / base:.1f}x |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", nargs="*", default=["baseline_cnn"], help="registered architectures (random weights)")
    parser.add_argument("--model", nargs="*", default=["default"],
                        help="checkpoints or shipped names; skipped if absent")
    parser.add_argument("--batch", type=int, default=32, help="faces per batch for the amortised rows")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    from ferkit.models.checkpoint import load_model
    from ferkit.errors import ModelError
    from ferkit.models import create_model, get_entry

    cpu = platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), {cpu}")
    rows = ["| model | input | faces per call | method | ms per face | vs forward |", "|---|---|---|---|---|---|"]
    for arch in args.arch:
        entry = get_entry(arch)
        size = entry.default_input_size
        torch.manual_seed(0)
        rows += bench(arch, create_model(arch, in_chans=entry.default_in_chans, input_size=size),
                      entry.default_in_chans, size, args.batch, args.repeats)
    for spec in args.model:
        try:
            model, config = load_model(spec)
        except ModelError as exc:
            print(f"skipped model {spec!r}: {exc}")
            continue
        rows += bench(f"{spec} ({config.arch})", model, config.in_chans, config.input_size, args.batch, args.repeats)
    patch, stride = default_patch(48)
    print(f"defaults: SmoothGrad 25 samples; occlusion patch {patch} stride {stride} at 48 px "
          f"({len(range(0, 48 - patch + 1, stride)) ** 2} occluded copies per face), 64 per forward pass")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
