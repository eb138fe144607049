"""Data-loading benchmark: first (uncached) read and cached read of the FER2013 zip, plus the quality report.

    OMP_NUM_THREADS=1 python benchmarks/bench_data.py [PATH] [--repeats 5] [--json]

PATH defaults to ../shared/data/fer2013.zip. The first read decodes into a fresh temporary cache folder, so
the result does not depend on what is already cached on the machine.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from ferkit.data.loader import load_dataset_with_report
from ferkit.data.quality import quality_report

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "fer2013.zip"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default=str(DEFAULT))
    parser.add_argument("--repeats", type=int, default=5, help="cached reads to time (median reported)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ferkit-bench-") as cache:
        start = time.perf_counter()
        ds, report = load_dataset_with_report(args.path, cache_dir=cache)
        first = time.perf_counter() - start
        assert not report.from_cache
        cache_mb = Path(report.cache_file).stat().st_size / 2**20

        cached = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            _, report = load_dataset_with_report(args.path, cache_dir=cache)
            cached.append(time.perf_counter() - start)
            assert report.from_cache

    start = time.perf_counter()
    quality = quality_report(ds)
    quality_s = time.perf_counter() - start

    result = {
        "path": str(args.path),
        "images": len(ds),
        "splits": {s: len(ds.split(s)) for s in ds.available_splits()},
        "first_read_s": round(first, 2),
        "cached_read_s_median": round(statistics.median(cached), 3),
        "cached_read_s_all": [round(t, 3) for t in cached],
        "cache_file_mb": round(cache_mb, 1),
        "quality_report_s": round(quality_s, 2),
        "duplicate_groups": len(quality.duplicate_groups),
        "duplicate_extra_copies": quality.duplicate_images,
        "images_with_copies": quality.images_with_copies,
        "leak_groups": len(quality.leak_groups),
        "leaked_train_images": quality.leaked_train_images,
        "blanks": len(quality.blanks),
        "label_conflicts": quality.label_conflicts,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpu, "
                   f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, opencv {cv2.__version__}",
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
