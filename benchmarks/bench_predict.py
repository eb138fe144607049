"""End-to-end face pipeline benchmark: ferkit (ONNX Runtime and optionally torch backends) against the `fer` package.

    python benchmarks/bench_predict.py --threads 1,2 \
        --detector-model ../shared/models/face_detection_yunet_2023mar.onnx \
        --photos ../shared/media/photos --fer-python /tmp/fervenv/bin/python

Measures, on 640 x 480 frames made from the photos (letterboxed): end-to-end latency per frame with one, two
and five faces; classifier throughput on pre-cropped faces at batch 1 and batch 64; cold start (a fresh
process: import + model load + first prediction). Every thread count in --threads is measured for every
pipeline in the same run (torch, OpenCV, ONNX Runtime and TFLite each limited to that many threads). `fer`
runs in its own virtualenv (it needs TensorFlow): see BENCHMARKS.md for the exact set that installs; this file
re-runs itself there with `--worker fer`, so it imports only the standard library at the top. Without
`--fer-python` only ferkit is measured. `--rounds N` runs the whole sequence N times and reports the median round,
with each round's ratio against `fer` in that same round.

The ferkit rows: the default pipeline exactly as `Recognizer()` builds it (YuNet, the model's shipped ONNX twin,
INT8 where it ships so, with its shipped TTA), plus one row per extra --tta (as `Recognizer(tta=...)` runs it),
and with --float / --torch / --haar the float ONNX graph, the torch backend and the Haar fallback. --model
defaults to the shipped "default" model, or a seeded untrained --arch checkpoint when it is not there (latency
depends only on the architecture).
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from timing import timed

PHOTOS = {"1": "single_face.jpg", "2": "two_people.jpg", "5": "multi_face.jpg"}  # faces in the frame -> photo
FRAME = (640, 480)
FER_NAME = "fer (haar + tflite)"
DEFAULT_NAME = "ferkit default"


def per_second(n: int, ms: list[float]) -> list[float]:
    return [n * 1000 / ms[0], n * 1000 / ms[1]]


def letterbox(img, size: tuple[int, int] = FRAME):
    """``img`` scaled to fit a ``size`` (width, height) frame, centred on grey."""
    import cv2
    import numpy as np

    h, w = img.shape[:2]
    s = min(size[0] / w, size[1] / h)
    small = cv2.resize(img, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    frame = np.full((size[1], size[0], 3), 114, np.uint8)
    y, x = (size[1] - small.shape[0]) // 2, (size[0] - small.shape[1]) // 2
    frame[y:y + small.shape[0], x:x + small.shape[1]] = small
    return frame


def make_frames(photos: Path, out: Path) -> None:
    """Letterbox each photo into a 640 x 480 BGR frame (saved as .npy for the worker)."""
    import cv2
    import numpy as np

    for key, name in PHOTOS.items():
        np.save(out / f"{key}.npy", letterbox(cv2.imread(str(photos / name))))


def load_frames(folder: Path) -> dict:
    import numpy as np

    return {key: np.load(folder / f"{key}.npy") for key in PHOTOS}


def measure(predict, frames: dict, repeats: int) -> dict:
    """faces found and [median, best] ms per frame, for every frame."""
    return {"faces_found": {k: len(predict(f)) for k, f in frames.items()},
            "frame_ms": {k: timed(lambda f=f: predict(f), repeats) for k, f in frames.items()}}


# --------------------------------------------------------------------------------------------------------------
# ferkit


def onnx_classifiers(args, tmp: Path, model: str) -> dict:
    """Row name -> (threads -> ONNX classifier). A shipped model runs its shipped twin (INT8 where it ships so,
    its TTA views cut on the host), as ``Recognizer(model=NAME, tta=...)`` loads it; a checkpoint is exported
    here with each TTA inside. ``--float`` adds the shipped model's float export beside an INT8 twin."""
    from ferkit.inference.export import export_onnx
    from ferkit.inference.onnx_backend import OnnxClassifier, load_onnx_classifier
    from ferkit.models.checkpoint import WEIGHTS_DIR

    def exported(tta=None, model=model):
        path = export_onnx(model, tmp / f"{Path(model).stem}-{tta or 'own'}.onnx", tta=tta)
        return lambda threads: OnnxClassifier(path, device="cpu", threads=threads)

    def shipped_twin(tta=None, model=model):
        return lambda threads: load_onnx_classifier(model, tta=tta, device="cpu", threads=threads)

    def is_shipped(model):
        return "/" not in model and (WEIGHTS_DIR / f"{model}.onnx").is_file()

    def maker(model):
        # load_onnx_classifier takes an .onnx file as it is (e.g. a candidate INT8 twin) as well as a shipped name
        direct = is_shipped(model) or model.endswith(".onnx")
        return functools.partial(shipped_twin if direct else exported, model=model)

    shipped = is_shipped(model)
    make = maker(model)
    out = {DEFAULT_NAME: make()}
    own = out[DEFAULT_NAME](1)
    for tta in filter(None, args.tta.split(",")):
        if tta != own.tta:  # the default row already measures it
            out[f"ferkit --tta {tta}"] = make(tta)
    if args.float and shipped and own.quantized:
        out[f"{DEFAULT_NAME}, float"] = exported()
    for other in args.also:  # candidates measured beside the default, in the same rounds
        out[f"ferkit --model {other}"] = maker(other)()
    return out


def bench_ferkit(args, folder: Path, model: str, classifiers: dict, threads: int) -> list[dict]:
    import cv2
    import numpy as np

    from ferkit import Recognizer

    cv2.setNumThreads(threads)
    frames = load_frames(folder)
    setups = [(name, lambda make=make: dict(model=make(threads), detector="yunet"))
              for name, make in classifiers.items()]
    if args.torch:
        def torch_setup():
            import torch

            torch.set_num_threads(threads)
            return dict(model=model, detector="yunet", backend="torch")
        setups.append(("ferkit yunet + torch", torch_setup))
    if args.opencv_detector:  # YuNet on OpenCV's FaceDetectorYN, the default engine until 2026-12-02
        def opencv_setup():
            from ferkit.inference.detectors import create_detector

            return dict(model=classifiers[DEFAULT_NAME](threads),
                        detector=create_detector("yunet", model_path=args.detector_model, min_face=10, engine="opencv"))
        setups.append((f"{DEFAULT_NAME}, YuNet on OpenCV", opencv_setup))
    if args.haar:
        setups.append(("ferkit haar + onnx", lambda: dict(model=classifiers[DEFAULT_NAME](threads), detector="haar")))
    rows = []
    for name, kwargs in setups:
        rec = Recognizer(device="cpu", detector_model=args.detector_model, **kwargs())
        tta = rec.classifier.tta + (", int8" if getattr(rec.classifier, "quantized", False) else "")
        row = {"name": name, "threads": threads, "tta": tta, **measure(rec.predict, frames, args.repeats)}
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


def fer_worker(folder: Path, repeats: int, threads: int) -> None:
    import logging

    import cv2
    import numpy as np

    logging.disable(logging.WARNING)
    cv2.setNumThreads(threads)
    from fer.fer import FER

    det = FER()  # its defaults: Haar cascade, quantised TFLite model, offsets (10, 10)
    faces = (np.random.default_rng(0).random((64, 64, 64), dtype=np.float32) - 0.5) * 2  # its input: 64x64 in [-1, 1]
    row = {
        "name": FER_NAME, "threads": threads, **measure(det.detect_emotions, load_frames(folder), repeats),
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
    p.add_argument("--tta", default="", help="comma-separated extra TTA modes measured beside the shipped one")
    p.add_argument("--also", action="append", default=[], metavar="MODEL",
                   help="another model measured beside it at its own TTA (a shipped name, a checkpoint, or an "
                        ".onnx file such as a candidate INT8 twin); repeatable")
    p.add_argument("--float", action="store_true",
                   help="also measure a shipped INT8 twin's float counterpart (exported here, TTA inside)")
    p.add_argument("--torch", action="store_true", help="also measure the torch backend")
    p.add_argument("--opencv-detector", action="store_true",
                   help="also measure the default pipeline with YuNet on OpenCV's FaceDetectorYN")
    p.add_argument("--haar", action="store_true", help="also measure the Haar fallback detector")
    p.add_argument("--fer-python", default=None, help="python of a virtualenv with `fer` installed")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--rounds", type=int, default=1,
                   help="run every pipeline and fer this many times, alternating, and report the median round "
                        "(this machine's speed drifts by 20%% over minutes; a ratio from one moment can mislead)")
    p.add_argument("--threads", default="1", help="comma-separated thread counts, each measured (e.g. 1,2)")
    p.add_argument("--skip-cold", action="store_true")
    p.add_argument("--json-out", type=Path, default=None)
    p.add_argument("--worker", choices=("fer",), help=argparse.SUPPRESS)
    p.add_argument("--frames", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args()
    thread_counts = [int(t) for t in str(args.threads).split(",") if t]
    if args.worker == "fer":
        return fer_worker(args.frames, args.repeats, thread_counts[0])

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_frames(args.photos, tmp)
        model, label = resolve_model(args, tmp)
        classifiers = onnx_classifiers(args, tmp, model)
        rows = []
        for round_ in range(args.rounds):
            for threads in thread_counts:  # ferkit then fer at each thread count: side by side under the same load
                found = bench_ferkit(args, tmp, model, classifiers, threads)
                if args.fer_python:
                    found.append(run_fer(args, tmp, threads))
                rows += [{**row, "round": round_} for row in found]
        onnx_path = str(classifiers[DEFAULT_NAME](1).path)
        cold = {} if args.skip_cold else cold_starts(args, tmp, model, onnx_path, thread_counts[0])
    report(rows, cold, label, args)


def run_fer(args, folder: Path, threads: int) -> dict:
    out = subprocess.run([args.fer_python, __file__, "--worker", "fer", "--frames", str(folder),
                          "--repeats", str(args.repeats), "--threads", str(threads)],
                         check=True, capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": str(threads),
                              "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1"})
    line = out.stdout.strip().splitlines()[-1]
    print(line, file=sys.stderr)
    return json.loads(line)


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


def cold_starts(args, tmp: Path, model: str, onnx_path: str, threads: int) -> dict[str, float]:
    image = str(Path(__file__).resolve().parents[1] / "src/ferkit/assets/grace_hopper.jpg")
    det = f"detector='yunet', detector_model={args.detector_model!r}"
    recognizer = "from ferkit import Recognizer; Recognizer(model={!r}, {}, {}).predict({!r})"
    out = {
        "ferkit torch": cold_start(sys.executable, recognizer.format(model, det, "backend='torch'", image),
                                   threads),
        "ferkit onnx": cold_start(sys.executable, recognizer.format(onnx_path, det, "backend='onnx'", image),
                                  threads),
    }
    if "/" not in model:  # a shipped model: what Recognizer(model=NAME) does by default (backend="auto")
        out["ferkit auto"] = cold_start(sys.executable, recognizer.format(model, det, "backend='auto'", image),
                                        threads)
    if args.fer_python:
        out["fer"] = cold_start(args.fer_python, f"import cv2; from fer.fer import FER; "
                                f"FER().detect_emotions(cv2.imread({image!r}))", threads)
    print(json.dumps({"cold_start_s": out}), file=sys.stderr)
    return out


def report(rows: list[dict], cold: dict[str, float], label: str, args) -> None:
    def ms(v: list[float]) -> str:
        return f"{v[0]:.1f} ({v[1]:.1f})"

    def rate(v: list[float] | None) -> str:
        return "-" if v is None else f"{v[0]:,.0f} ({v[1]:,.0f})"

    keys = list(PHOTOS)
    by_round = rows
    rows = merge_rounds(rows)
    rounds = f", the median round of {args.rounds} (best: the fastest run of any)" if args.rounds > 1 else ""
    print(f"model: {label}; median (best) of {args.repeats} runs{rounds}\n")
    print("| pipeline | TTA | threads | faces found (" + ", ".join(f"{k}-face" for k in keys) + " frame) | "
          + " | ".join(f"640x480, {k} face{'s' * (k != '1')} (ms)" for k in keys)
          + " | classify batch 1 (faces/s) | classify batch 64 (faces/s) |")
    print("|---|---|---:|---|" + "---:|" * (len(keys) + 2))
    for r in rows:
        print(f"| {r['name']} | {r.get('tta', '-')} | {r['threads']} | "
              + ", ".join(str(r["faces_found"][k]) for k in keys) + " | "
              + " | ".join(ms(r["frame_ms"][k]) for k in keys)
              + f" | {rate(r.get('batch1_faces_per_s'))} | {rate(r.get('batch64_faces_per_s'))} |")
    print()
    for r in rows:
        fer = next((f for f in rows if f["name"] == FER_NAME and f["threads"] == r["threads"]), None)
        if fer is None or r is fer:
            continue
        ratios = [f"{fer['frame_ms'][k][0] / r['frame_ms'][k][0]:.1f}x / {fer['frame_ms'][k][1] / r['frame_ms'][k][1]:.1f}x"
                  f" ({k} face{'s' * (k != '1')})" for k in keys]
        print(f"- {r['name']} ({r.get('tta')}, {r['threads']} thread(s)) vs fer, median / best: " + ", ".join(ratios))
        if args.rounds > 1:
            per_round = round_ratios(by_round, r["name"], r["threads"])
            print("  each round's median against fer's in the same round: " + "; ".join(
                f"{k} face{'s' * (k != '1')} " + " / ".join(f"{x:.1f}x" for x in per_round[k]) for k in keys))
    if cold:
        print("\ncold start (fresh process: import + load + first prediction): "
              + ", ".join(f"{k} {v:.2f} s" for k, v in cold.items()))
    if args.json_out:
        args.json_out.write_text(json.dumps({"rows": rows, "rounds": by_round, "cold_start_s": cold, "model": label},
                                            indent=1))


def merge_rounds(rows: list[dict]) -> list[dict]:
    """One row per (pipeline, threads): each time the median of the rounds' medians and the best of their bests."""
    import statistics

    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["name"], r["threads"]), []).append(r)
    merged = []
    for same in groups.values():
        row = {k: v for k, v in same[0].items() if k != "round"}
        row["frame_ms"] = {k: [statistics.median(r["frame_ms"][k][0] for r in same),
                               min(r["frame_ms"][k][1] for r in same)] for k in row["frame_ms"]}
        for key in ("batch1_faces_per_s", "batch64_faces_per_s"):
            if row.get(key) is not None:
                row[key] = [statistics.median(r[key][0] for r in same), max(r[key][1] for r in same)]
        merged.append(row)
    return merged


def round_ratios(rows: list[dict], name: str, threads: int) -> dict[str, list[float]]:
    """fer's median over the pipeline's, per frame, in each round (same round: the same moment of the machine)."""
    ratios: dict[str, list[float]] = {k: [] for k in PHOTOS}
    for r in rows:
        if r["name"] != name or r["threads"] != threads:
            continue
        fer = next(f for f in rows if f["name"] == FER_NAME and f["threads"] == threads and f["round"] == r["round"])
        for k in PHOTOS:
            ratios[k].append(fer["frame_ms"][k][0] / r["frame_ms"][k][0])
    return ratios


if __name__ == "__main__":
    main()
