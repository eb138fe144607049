"""`ferkit predict`: expressions of the faces in image files and folders.

    ferkit predict photo.jpg folder/ --json > faces.json
    ferkit predict folder/ --recursive --csv faces.csv --save-annotated annotated/

``--json`` prints the DESIGN.md section 3 contract: one list with {path, faces: [...]} per input, or
{path, error} for an input that cannot be read. The exit status is 1 only when every input failed.
"""
from __future__ import annotations

import argparse

from ferkit.transforms.views import TTA_MODES


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="detect faces in images and classify their expressions",
        description="Detect faces in image files (or folders of them) and classify each face's expression.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON list (DESIGN.md section 3) to stdout")
    out.add_argument("--csv", metavar="FILE", help="write one row per face (and per unreadable file) to FILE")
    p.add_argument("--save-annotated", metavar="DIR", help="write each image with boxes and labels into DIR")
    p.add_argument("--detector", default="auto", choices=("auto", "yunet", "haar", "none"),
                   help="face detector; auto = YuNet when its model file is available, else Haar; "
                        "none = each image already is a face crop")
    p.add_argument("--detector-model", metavar="FILE", help="the YuNet ONNX file (face_detection_yunet_2023mar.onnx)")
    p.add_argument("--model", default="default", help="shipped model name, checkpoint .pt or exported .onnx")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                   help="inference backend; auto = ONNX Runtime on CPU for shipped models and .onnx files "
                        "when onnxruntime is installed, else torch")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    p.add_argument("--recursive", action="store_true", help="also read images in sub-folders")
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="images decoded and classified together: their faces share batched forward passes")
    p.add_argument("--min-face", type=int, default=20, metavar="PX",
                   help="faces smaller than this are reported without an emotion")
    p.add_argument("--max-side", type=int, default=480, metavar="PX",
                   help="detect on images downscaled to this longer side (raise it for small faces in big photos; "
                        "0: full size)")
    p.add_argument("--crop-margin", type=float, default=None,
                   help="override the model's face-crop margin (fraction of the face box on each side)")
    p.add_argument("--tta", choices=TTA_MODES, default=None,
                   help="override the model's test-time augmentation (e.g. flip: 5x faster than default's "
                        "flip_shift, 0.8 points less accurate on FER2013)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ferkit.errors import FerkitError
    from ferkit.inference.imageio import IMAGE_SUFFIXES
    from ferkit.labels import EMOTIONS
    from ferkit.paths import check_writable
    from ferkit.inference.recognizer import Recognizer

    if args.batch_size < 1:
        raise FerkitError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.csv:
        check_writable(args.csv, "--csv")  # written last: refuse it before the predictions, not after
    inputs = list(_expand(args.paths, args.recursive, IMAGE_SUFFIXES))
    if not inputs:
        raise FerkitError(f"no image files found in {', '.join(args.paths)}"
                          + ("" if args.recursive else " (add --recursive to search sub-folders)"))
    try:
        rec = Recognizer(model=args.model, detector=args.detector, device=args.device, backend=args.backend,
                         detector_model=args.detector_model, min_face=args.min_face, crop_margin=args.crop_margin,
                         max_side=args.max_side, tta=args.tta)
    except FerkitError as exc:
        # A detector or model that cannot load fails every input the same way: say so once on stderr and
        # still give each input its error entry, so --json / --csv consumers get the contract's shape.
        print(f"ferkit predict: error: {exc}", file=sys.stderr)
        rec, records = None, [{"path": str(p), "error": str(exc)} for p in inputs]
    else:
        print(f"ferkit predict: detector {rec.detector_description}; classifier {rec.classifier.description}",
              file=sys.stderr)
        records = _predict_all(rec, inputs, args)
    # Inputs stay in the order given, whatever order decoding failed in.
    order = {str(p): i for i, p in enumerate(inputs)}
    records.sort(key=lambda r: order[r["path"]])

    failed = sum("error" in r for r in records)
    n_faces = sum(len(r.get("faces", ())) for r in records)
    if args.json:
        # One input per line: valid JSON that stays readable and greppable for large folders.
        sys.stdout.write("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
    elif args.csv:
        _write_csv(Path(args.csv), records, rec.labels if rec else EMOTIONS)
    else:
        for r in records:
            print(_summary(r))
    where = [f"CSV in {args.csv}"] if args.csv else []
    where += [f"annotated images in {args.save_annotated}"] if args.save_annotated and rec else []
    print(f"ferkit predict: {_count(len(records), 'image')}, {_count(n_faces, 'face')}, {failed} failed"
          + (f"; {', '.join(where)}" if where else ""), file=sys.stderr)
    return 1 if failed == len(records) else 0


def _predict_all(rec, inputs: list, args: argparse.Namespace) -> list[dict]:
    """Decode, detect and classify in chunks of --batch-size images; unreadable files become error entries."""
    import sys
    from pathlib import Path

    import cv2
    from tqdm import tqdm

    from ferkit.errors import DataError
    from ferkit.inference.imageio import load_image

    annotated_dir = Path(args.save_annotated) if args.save_annotated else None
    if annotated_dir:
        annotated_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    used_names: set[str] = set()
    bar = tqdm(total=len(inputs), desc="predict", unit="img", file=sys.stderr, disable=None)
    for start in range(0, len(inputs), args.batch_size):
        chunk = inputs[start:start + args.batch_size]
        decoded, ok_paths = [], []
        for path in chunk:
            try:
                decoded.append(load_image(path))
                ok_paths.append(path)
            except DataError as exc:
                records.append({"path": str(path), "error": str(exc)})
        for path, image, faces in zip(ok_paths, decoded, rec.predict_decoded(decoded)):
            records.append({"path": str(path), "faces": [f.to_dict() for f in faces]})
            if annotated_dir:
                target = annotated_dir / _unique_name(path, used_names)
                if not cv2.imwrite(str(target), rec.annotate(image, faces, color="rgb")):
                    records[-1]["warning"] = f"could not write {target}"
        bar.update(len(chunk))
    bar.close()
    return records


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _expand(paths: list[str], recursive: bool, suffixes: frozenset[str]):
    """Files as given (whatever their suffix: decoding decides), folders expanded to their image files.
    A missing path is passed through so it gets its own error entry."""
    from pathlib import Path

    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            yield from sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in suffixes)
        else:
            yield path


def _unique_name(path, used: set[str]) -> str:
    """``name.jpg`` in the output folder; ``name-2.jpg`` ... when two inputs share a name."""
    stem, suffix = path.stem, path.suffix.lower()
    if suffix not in (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"):
        suffix = ".png"  # GIF and other formats OpenCV cannot write
    name, n = f"{stem}{suffix}", 1
    while name in used:
        n += 1
        name = f"{stem}-{n}{suffix}"
    used.add(name)
    return name


def _summary(record: dict) -> str:
    if "error" in record:
        return f"{record['path']}: error: {record['error']}"
    faces = record["faces"]
    if not faces:
        return f"{record['path']}: no face"
    parts = [f"{f['emotion']} {f['probs'][f['emotion']]:.2f} at {f['box']}" if f["emotion"]
             else f"face too small to classify at {f['box']}" for f in faces]
    return f"{record['path']}: " + "; ".join(parts)


def _write_csv(path, records: list[dict], labels) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "face", "x", "y", "w", "h", "score", "emotion", *[f"p_{l}" for l in labels], "error"])
        for r in records:
            if "error" in r:
                w.writerow([r["path"], "", "", "", "", "", "", "", *[""] * len(labels), r["error"]])
                continue
            for i, face in enumerate(r["faces"]):
                probs = [face["probs"].get(l, "") for l in labels]
                w.writerow([r["path"], i, *face["box"], face["score"], face["emotion"] or "", *probs, ""])
