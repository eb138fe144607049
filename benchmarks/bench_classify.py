"""Classifier speed of the shipped models: one face (latency) and batches of 64 (throughput), per backend and
thread count, on pre-cropped faces at the size the Recognizer crops for the model, with its shipped TTA.

    python benchmarks/bench_classify.py [--models default,fast] [--threads 1,2] [--repeats 50] [--data FER2013]

The real-time bar: one face in at most 5 ms, and at least 1,000 faces/s at batch 64 with the faster
backend. Every cell is the median (best) of the repeats, all measured in one process, one after the other.
The faces are seeded noise, or with --data 64 FER2013 PublicTest faces (every 56th): adaptive TTA's cost
depends on how many faces it is unsure of (noise: nearly all, its worst case), so its rows also give that share.
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from timing import timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="default,fast")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--tta", default=None, help="override the shipped TTA (none, flip, flip_shift, flip_crop, "
                    "adaptive); torch backend and a cached ONNX export")
    ap.add_argument("--data", help="time on 64 FER2013 PublicTest faces from this dataset instead of noise")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    real = None
    if args.data:
        from ferkit.data import load_dataset

        real = load_dataset(args.data).split("publictest").images[::56][:64]

    import cv2
    import torch

    from ferkit.inference.onnx_backend import load_onnx_classifier
    from ferkit.inference.torch_backend import TorchClassifier
    from ferkit.transforms.views import ADAPTIVE_CONFIDENCE

    rows = []
    for name in args.models.split(","):
        for threads in (int(t) for t in args.threads.split(",")):
            torch.set_num_threads(threads)
            backends = {"torch": TorchClassifier.load(name, device="cpu", tta=args.tta),
                        "onnx": load_onnx_classifier(name, tta=args.tta, device="cpu", threads=threads)}
            for backend, clf in backends.items():
                s = clf.crop_size
                faces = (np.random.default_rng(0).integers(0, 256, (64, s, s, 3), np.uint8) if real is None
                         else np.stack([cv2.cvtColor(cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA),
                                                     cv2.COLOR_GRAY2RGB) for f in real]))
                one = timed(lambda: clf.predict_proba(faces[:1]), args.repeats * 2, warmup=3)
                many = timed(lambda: clf.predict_proba(faces), args.repeats, warmup=3)
                row = {"model": name, "tta": clf.tta, "backend": backend, "threads": threads,
                       "batch1_ms": one, "batch64_faces_per_s": [64000 / many[0], 64000 / many[1]]}
                if clf.tta == "adaptive":  # the share of the 64 faces that got flip_shift's extra views
                    flip = (TorchClassifier.load(name, device="cpu", tta="flip") if backend == "torch" else
                            load_onnx_classifier(name, tta="flip", device="cpu", threads=threads))
                    row["unsure_share"] = float((flip.predict_proba(faces).max(1) < ADAPTIVE_CONFIDENCE).mean())
                rows.append(row)
                if not args.json:
                    unsure = f", {100 * row['unsure_share']:.0f}% unsure" if "unsure_share" in row else ""
                    print(f"{name:8s} tta={clf.tta:10s} {backend:5s} {threads} thr: one face "
                          f"{row['batch1_ms'][0]:6.2f} ms ({row['batch1_ms'][1]:.2f}), batch 64 "
                          f"{row['batch64_faces_per_s'][0]:7.0f} faces/s ({row['batch64_faces_per_s'][1]:.0f}){unsure}")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
