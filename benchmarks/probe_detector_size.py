"""YuNet's input size (``max_side``) and engine (ONNX Runtime or OpenCV's FaceDetectorYN) as speed levers: time
per 640x480 frame, the smallest face still found, and recall against full-resolution detection on the shared
media, per engine and size, in one run.

    python benchmarks/probe_detector_size.py --detector-model ../shared/models/face_detection_yunet_2023mar.onnx \
        --media ../shared/media [--sizes 480,400,352,320] [--engines onnxruntime,opencv] [--threads 1]

Time: ``detect`` on the bench_predict frames (one, two and five faces), median of ``--repeats``. Smallest face:
the face of single_face.jpg shrunk step by step (2 px) into a grey 640x480 frame, the narrowest box width still
detected. Recall: every face of at least 20 px (the Recognizer's default ``min_face``) that YuNet finds at full
resolution in the photos, in the photos letterboxed to 640x480 and in 20 frames of each video, matched at IoU
0.5. Nothing here changes a default; it measures a lever.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from timing import timed


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def media_images(media: Path) -> list:
    import cv2
    import numpy as np
    from PIL import Image

    from bench_predict import letterbox

    images = []
    for p in sorted((media / "photos").iterdir()):
        img = cv2.cvtColor(np.array(Image.open(p).convert("RGB")), cv2.COLOR_RGB2BGR)
        images += [img, letterbox(img)]
    for v in sorted((media / "video").glob("*.mp4")):
        cap = cv2.VideoCapture(str(v))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for k in range(0, n, max(1, n // 20)):
            cap.set(cv2.CAP_PROP_POS_FRAMES, k)
            ok, frame = cap.read()
            if ok:
                images.append(frame)
    return images


def smallest_face(detector, face, face_width: int) -> int | None:
    import cv2
    import numpy as np

    for side in range(10, 80, 2):
        f = cv2.resize(face, None, fx=side / face_width, fy=side / face_width, interpolation=cv2.INTER_AREA)
        frame = np.full((480, 640, 3), 114, np.uint8)
        frame[200:200 + f.shape[0], 300:300 + f.shape[1]] = f
        if detector.detect(frame):
            return side
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--detector-model", required=True)
    ap.add_argument("--media", type=Path, default=Path(__file__).resolve().parents[2] / "shared/media")
    ap.add_argument("--sizes", default="480,400,352,320")
    ap.add_argument("--engines", default="onnxruntime,opencv")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()

    import cv2
    import numpy as np

    import bench_predict
    from ferkit.inference.detectors import YuNetDetector

    cv2.setNumThreads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        bench_predict.make_frames(args.media / "photos", Path(tmp))
        frames = bench_predict.load_frames(Path(tmp))
    full = YuNetDetector(args.detector_model, min_face=8, max_side=None)
    photo = cv2.imread(str(args.media / "photos" / "single_face.jpg"))
    x, y, w, h = [int(v) for v in full.detect(photo)[0].box]
    pad = int(0.6 * w)
    face = photo[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad]
    images = media_images(args.media)
    references = [[d.box for d in full.detect(img) if min(d.box[2:]) >= 20] for img in images]
    rows = []
    for engine, size in [(e, int(s)) for e in args.engines.split(",") for s in args.sizes.split(",")]:
        det = YuNetDetector(args.detector_model, min_face=4, max_side=size, engine=engine)
        found = sum(sum(any(iou(r, d.box) > 0.5 for d in det.detect(img)) for r in refs)
                    for img, refs in zip(images, references))
        rows.append({"engine": engine, "max_side": size,
                     "frame_ms": {k: round(timed(lambda f=f: det.detect(f), args.repeats)[0], 2)
                                  for k, f in frames.items()},
                     "smallest_face_px": smallest_face(det, face, w),
                     "recall": f"{found}/{sum(map(len, references))}"})
        print(json.dumps(rows[-1]), flush=True)
    print(f"\n{len(images)} images; threads {args.threads}\n")
    print("| engine | max_side | 1-face frame (ms) | 2-face frame (ms) | 5-face frame (ms) "
          "| smallest face found (px, 640x480) | faces >= 20 px found |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['engine']} | {r['max_side']} | " + " | ".join(f"{v:.1f}" for v in r["frame_ms"].values())
              + f" | {r['smallest_face_px']} | {r['recall']} |")


if __name__ == "__main__":
    main()
