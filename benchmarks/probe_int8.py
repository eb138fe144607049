"""INT8 static quantization of a shipped model's ONNX twin with ONNX Runtime: speed and PublicTest accuracy
against float, in one run.

    python benchmarks/probe_int8.py --data ../shared/data/fer2013.zip [--model default] [--calibration 512]

Calibration: ``--calibration`` training faces (seeded sample), fed through the exported graph as the
Recognizer feeds it (crops at the model's crop size). Quantization: QDQ format, int8 weights per channel and
activations, MinMax calibration. Speed: one face and batches of 64 at 1 ONNX Runtime thread, median (best) of
``--repeats``. Accuracy: FER2013 PublicTest under the model's own shipped TTA (it is inside the graph).
Nothing here is shipped; it measures a lever.
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
    ap.add_argument("--calibration", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    from ferkit.data import load_dataset
    from ferkit.evaluation.metrics import compute_metrics
    from ferkit.inference.onnx_backend import OnnxClassifier, load_onnx_classifier

    fp32 = load_onnx_classifier(args.model, device="cpu", threads=1)
    data = load_dataset(args.data)
    train, test = data.split("train"), data.split("publictest")
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(train), args.calibration, replace=False))
    calib = fp32._as_input(train.images[pick])  # the graph's own input: float32 N x S x S x 3, 0-255

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"faces": calib[i:i + 32]} for i in range(0, len(calib), 32)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        int8_path = Path(tmp) / f"{args.model}-int8.onnx"
        quantize_static(str(fp32.path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)
        int8 = OnnxClassifier(int8_path, device="cpu", threads=1)
        rows = {}
        for name, clf in (("float32", fp32), ("int8", int8)):
            probs = clf.predict_proba(test.images)
            metrics = compute_metrics(test.labels, probs, list(test.label_names))
            side = clf.crop_size
            one = np.full((1, side, side, 3), 128, np.uint8)
            batch = np.random.default_rng(1).integers(0, 256, (64, side, side, 3), dtype=np.uint8)
            t1 = timed(lambda: clf.predict_proba(one), args.repeats)
            t64 = timed(lambda: clf.predict_proba(batch), args.repeats)
            rows[name] = {"accuracy": round(metrics["accuracy"], 4), "macro_f1": round(metrics["macro_f1"], 4),
                          "one_face_ms": [round(v, 2) for v in t1],
                          "batch64_faces_per_s": [round(64_000 / v, 1) for v in t64],
                          "file_mb": round(Path(clf.path).stat().st_size / 1e6, 2)}
    rows["speedup_one_face"] = round(rows["float32"]["one_face_ms"][0] / rows["int8"]["one_face_ms"][0], 2)
    rows["speedup_batch64"] = round(rows["int8"]["batch64_faces_per_s"][0] / rows["float32"]["batch64_faces_per_s"][0], 2)
    print(json.dumps({"model": args.model, "tta": fp32.tta, "calibration": args.calibration, **rows}, indent=1))


if __name__ == "__main__":
    main()
