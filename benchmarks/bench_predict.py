"""End-to-end face pipeline benchmark: ferkit (torch and ONNX Runtime backends) against the `fer` package.

    OMP_NUM_THREADS=1 python benchmarks/bench_predict.py \
        --detector-model ../shared/models/face_detection_yunet_2023mar.onnx \
        --photos ../shared/media/photos --fer-python /tmp/fervenv/bin/python

Measures, on 640 x 480 frames made from the photos (letterboxed): end-to-end latency per frame with one face
and with five faces; classifier throughput on pre-cropped faces at batch 1 and batch 64; cold start (a fresh
process: import + model load + first prediction). `fer` runs in its own virtualenv (it needs TensorFlow):
`python3 -m venv /tmp/fervenv && /tmp/fervenv/bin/pip install fer` (see BENCHMARKS.md for the exact set that
installs); this file re-runs itself there with `--worker fer`, so it imports only the standard library at the
top. Without `--fer-python` only ferkit is measured.

--model defaults to the shipped "default" model, or a seeded untrained --arch checkpoint when it is not there
(latency depends only on the architecture, not on the weights).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import timed

ONE_FACE = "single_face.jpg"
FIVE_FACES = "multi_face.jpg"
FRAME = (640, 480)
FER_NAME = "fer (haar + tflite)"


def per_second(n: int, ms: list[float]) -> list[float]:
    return [n * 1000 / ms[0], n * 1000 / ms[1]]


def make_frames(photos: Path, out: Path) -> None:
    """Letterbox the one-face and five-face photos into 640 x 480 BGR frames (saved as .npy for the worker)."""
    import cv2
    import numpy as np

    for name, key in ((ONE_FACE, "one"), (FIVE_FACES, "five")):
        img = cv2.imread(str(photos / name))
        h, w = img.shape[:2]
        s = min(FRAME[0] / w, FRAME[1] / h)
        small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        frame = np.full((FRAME[1], FRAME[0], 3), 114, np.uint8)
        y, x = (FRAME[1] - small.shape[0]) // 2, (FRAME[0] - small.shape[1]) // 2
        frame[y:y + small.shape[0], x:x + small.shape[1]] = small
        np.save(out / f"{key}.npy", frame)


# --------------------------------------------------------------------------------------------------------------
# ferkit


def bench_ferkit(args, frames: Path, model: str, onnx_path: str) -> list[dict]:
    import cv2
    import numpy as np
    import torch

    from ferkit import Recognizer
    from ferkit.inference.onnx_backend import OnnxClassifier

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    one, five = (np.load(frames / f"{k}.npy") for k in ("one", "five"))
    rows = []
    setups = [
        ("ferkit yunet + torch", dict(model=model, detector="yunet", backend="torch")),
        ("ferkit yunet + onnx", dict(model=OnnxClassifier(onnx_path, threads=args.threads), detector="yunet")),
        ("ferkit haar + onnx", dict(model=OnnxClassifier(onnx_path, threads=args.threads), detector="haar")),
    ]
    for name, kw in setups:
        rec = Recognizer(device="cpu", detector_model=args.detector_model, **kw)
        n1, n5 = len(rec.predict(one)), len(rec.predict(five))
        row = {"name": name, "faces_found": [n1, n5],
               "frame_1_face_ms": timed(lambda: rec.predict(one), args.repeats),
               "frame_5_faces_ms": timed(lambda: rec.predict(five), args.repeats)}
        if "haar" not in name:
            crops = np.random.default_rng(0).integers(0, 256, (64, rec.classifier.input_size,
                                                               rec.classifier.input_size, 3), np.uint8)
            row["batch1_faces_per_s"] = per_second(1, timed(lambda: rec.classify(crops[:1]), args.repeats * 3))
            row["batch64_faces_per_s"] = per_second(64, timed(lambda: rec.classify(crops), args.repeats))
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return rows


def cold_start(python: str, code: str, threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TF_CPP_MIN_LOG_LEVEL": "3",
           "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1"}
    t = time.perf_counter()
    subprocess.run([python, "-c", code], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


# --------------------------------------------------------------------------------------------------------------
# fer (runs in fer's own virtualenv)


def fer_worker(frames: Path, repeats: int, threads: int) -> None:
    import logging

    import cv2
    import numpy as np

    logging.disable(logging.WARNING)
    cv2.setNumThreads(threads)
    from fer.fer import FER

    det = FER()  # its defaults: Haar cascade, quantised TFLite model, offsets (10, 10)
    one, five = (np.load(frames / f"{k}.npy") for k in ("one", "five"))
    faces = (np.random.default_rng(0).random((64, 64, 64), dtype=np.float32) - 0.5) * 2  # its input: 64x64 in [-1, 1]
    row = {
        "name": FER_NAME,
        "faces_found": [len(det.detect_emotions(one)), len(det.detect_emotions(five))],
        "frame_1_face_ms": timed(lambda: det.detect_emotions(one), repeats),
        "frame_5_faces_ms": timed(lambda: det.detect_emotions(five), repeats),
        # fer classifies one face per interpreter call whatever the batch; batch 64 is its own batch API.
        "batch1_faces_per_s": per_second(1, timed(lambda: det._classify_emotions(faces[:1]), repeats * 3)),
        "batch64_faces_per_s": per_second(64, timed(lambda: det._classify_emotions(faces), repeats)),
    }
    print(json.dumps(row))


# --------------------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=Path, default=Path(__file__).resolve().parents[2] / "shared/media/photos")
    p.add_argument("--detector-model", default=None, help="YuNet ONNX file (else ferkit's cache)")
    p.add_argument("--model", default=None, help="checkpoint or shipped model name (default: 'default')")
    p.add_argument("--arch", default="baseline_cnn", help="architecture of the seeded stand-in checkpoint")
    p.add_argument("--fer-python", default=None, help="python of a virtualenv with `fer` installed")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-cold", action="store_true")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--worker", choices=("fer",), help=argparse.SUPPRESS)
    p.add_argument("--frames", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker == "fer":
        return fer_worker(args.frames, args.repeats, args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_frames(args.photos, tmp)
        model, label = resolve_model(args, tmp)
        from ferkit.inference.export import export_onnx

        onnx_path = str(export_onnx(model, tmp / "model.onnx"))
        rows = bench_ferkit(args, tmp, model, onnx_path)
        if args.fer_python:
            out = subprocess.run([args.fer_python, __file__, "--worker", "fer", "--frames", str(tmp),
                                  "--repeats", str(args.repeats), "--threads", str(args.threads)],
                                 check=True, capture_output=True, text=True,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3",
                                      "TF_NUM_INTRAOP_THREADS": str(args.threads), "TF_NUM_INTEROP_THREADS": "1"})
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(out.stdout.strip().splitlines()[-1], file=sys.stderr)
        cold = {} if args.skip_cold else cold_starts(args, tmp, model, onnx_path)
    report(rows, cold, label, args)


def resolve_model(args, tmp: Path) -> tuple[str, str]:
    from ferkit.models.checkpoint import WEIGHTS_DIR

    spec = args.model or "default"
    if args.model or (WEIGHTS_DIR / "default.pt").exists():
        return spec, spec
    import torch

    from ferkit.models.checkpoint import ModelConfig, save_checkpoint
    from ferkit.models import create_model

    torch.manual_seed(0)
    path = tmp / f"seeded-{args.arch}.pt"
    save_checkpoint(path, create_model(args.arch), ModelConfig(arch=args.arch))
    return str(path), f"untrained seeded {args.arch} (the shipped default is not there yet)"


def cold_starts(args, tmp: Path, model: str, onnx_path: str) -> dict[str, float]:
    image = str(Path(__file__).resolve().parents[1] / "src/ferkit/assets/grace_hopper.jpg")
    det = f"detector='yunet', detector_model={args.detector_model!r}"
    recognizer = "from ferkit import Recognizer; Recognizer(model={!r}, {}, {}).predict({!r})"
    out = {
        "ferkit torch": cold_start(sys.executable, recognizer.format(model, det, "backend='torch'", image),
                                   args.threads),
        "ferkit onnx": cold_start(sys.executable, recognizer.format(onnx_path, det, "backend='onnx'", image),
                                  args.threads),
    }
    if "/" not in model:  # a shipped model: what Recognizer(model=NAME) does by default (backend="auto")
        out["ferkit auto"] = cold_start(sys.executable, recognizer.format(model, det, "backend='auto'", image),
                                        args.threads)
    if args.fer_python:
        out["fer"] = cold_start(args.fer_python, f"import cv2; from fer.fer import FER; "
                                f"FER().detect_emotions(cv2.imread({image!r}))", args.threads)
    print(json.dumps({"cold_start_s": out}), file=sys.stderr)
    return out


def report(rows: list[dict], cold: dict[str, float], label: str, args) -> None:
    def ms(v: list[float]) -> str:
        return f"{v[0]:.1f} ({v[1]:.1f})"

    def rate(v: list[float] | None) -> str:
        return "-" if v is None else f"{v[0]:,.0f} ({v[1]:,.0f})"

    print(f"model: {label}; {args.threads} thread(s); median (best) of {args.repeats} runs\n")
    print("| pipeline | faces found (1-face, 5-face frame) | 640x480, 1 face (ms) | 640x480, 5 faces (ms) "
          "| classify batch 1 (faces/s) | classify batch 64 (faces/s) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['faces_found'][0]}, {r['faces_found'][1]} | {ms(r['frame_1_face_ms'])} "
              f"| {ms(r['frame_5_faces_ms'])} | {rate(r.get('batch1_faces_per_s'))} "
              f"| {rate(r.get('batch64_faces_per_s'))} |")
    fer = next((r for r in rows if r["name"] == FER_NAME), None)
    if fer:
        print()
        for r in rows:
            if r is fer:
                continue
            ratios = [fer[k][i] / r[k][i] for k in ("frame_1_face_ms", "frame_5_faces_ms") for i in (0, 1)]
            print(f"- {r['name']} vs fer end to end: {ratios[0]:.1f}x / {ratios[1]:.1f}x faster (1 face, "
                  f"median / best), {ratios[2]:.1f}x / {ratios[3]:.1f}x (5 faces)")
    if cold:
        print("\ncold start (fresh process: import + load + first prediction): "
              + ", ".join(f"{k} {v:.2f} s" for k, v in cold.items()))
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "cold_start_s": cold, "model": label}, indent=1))


if __name__ == "__main__":
    main()
