"""INT8 static quantization of a shipped model with ONNX Runtime: speed and PublicTest accuracy against float, in
one run.

    python benchmarks/probe_int8.py --data ../shared/data/fer2013.zip [--model default] [--tta none,flip,flip_shift]

The float graph is the model's network alone (exported once from its .pt, without TTA); every ``--tta`` mode
runs with its views cut on the host, as ``OnnxClassifier`` does. Two INT8 copies, both QDQ with int8 weights
per channel and MinMax calibration on ``--calibration`` seeded training faces: uint8 activations (U8S8,
``ferkit.inference.quantize``, what ``ferkit export --int8`` and the shipped twins use) and int8 activations
(S8S8, ONNX Runtime's default pairing). Speed: one face and batches of 64 at ``--threads`` ONNX Runtime
threads, median (best) of ``--repeats``. Accuracy: FER2013 PublicTest.
(The 2026-12-01 probe quantized the shipped graph with its TTA inside; that script is in git history.)
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from timing import timed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--tta", default="none,flip,flip_shift", help="TTA modes to measure (views cut on the host)")
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", help="also write the rows to this file")
    args = ap.parse_args()

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from tqdm import tqdm

    from ferkit.data import load_dataset, sample_faces
    from ferkit.evaluation.metrics import compute_metrics
    from ferkit.inference.onnx_backend import OnnxClassifier, _cached_export
    from ferkit.inference.quantize import quantize_onnx

    float_path = _cached_export(args.model, "none")
    modes = args.tta.split(",")
    reference = OnnxClassifier(float_path, device="cpu", threads=args.threads)
    calib = sample_faces(args.data, args.calibration)
    test = load_dataset(args.data).split("publictest")

    class Reader(CalibrationDataReader):
        def __init__(self):
            inputs = reference.graph_input(calib)
            self.batches = iter([{"faces": inputs[i:i + 32]} for i in range(0, len(inputs), 32)])

        def get_next(self):
            return next(self.batches, None)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        u8s8, s8s8 = Path(tmp) / "u8s8.onnx", Path(tmp) / "s8s8.onnx"
        quantize_onnx(float_path, u8s8, calib)
        quantize_static(str(float_path), str(s8s8), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
        variants = [("float32", float_path), ("int8 U8S8", u8s8), ("int8 S8S8", s8s8)]
        side = reference.crop_size
        one = np.full((1, side, side, 3), 128, np.uint8)
        batch = np.random.default_rng(1).integers(0, 256, (64, side, side, 3), dtype=np.uint8)
        for (name, path) in tqdm(variants, desc="variants"):
            for mode in modes:
                clf = OnnxClassifier(path, device="cpu", threads=args.threads, tta=mode)
                probs = clf.predict_proba(test.images)
                metrics = compute_metrics(test.labels, probs, list(test.label_names))
                t1 = timed(lambda: clf.predict_proba(one), args.repeats)
                t64 = timed(lambda: clf.predict_proba(batch), args.repeats)
                rows.append({"variant": name, "tta": mode, "accuracy": round(metrics["accuracy"], 4),
                             "macro_f1": round(metrics["macro_f1"], 4),
                             "one_face_ms": [round(v, 2) for v in t1],
                             "batch64_faces_per_s": [round(64_000 / v, 1) for v in t64],
                             "file_mb": round(Path(path).stat().st_size / 1e6, 2)})
    base = {r["tta"]: r for r in rows if r["variant"] == "float32"}
    for r in rows:
        r["speedup_one_face"] = round(base[r["tta"]]["one_face_ms"][0] / r["one_face_ms"][0], 2)
        r["speedup_batch64"] = round(r["batch64_faces_per_s"][0] / base[r["tta"]]["batch64_faces_per_s"][0], 2)
        r["accuracy_vs_float"] = round(r["accuracy"] - base[r["tta"]]["accuracy"], 4)
    out = {"model": args.model, "threads": args.threads, "calibration": args.calibration,
           "rows": rows}
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
