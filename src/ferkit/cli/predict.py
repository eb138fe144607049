"""`ferkit predict`: expressions of the faces in image files and folders.

    ferkit predict photo.jpg folder/ --json > faces.json
    ferkit predict folder/ --recursive --csv faces.csv --save-annotated annotated/

``--json`` prints the predict contract (README.md, "Output"): one list with {path, faces: [...]} per input, or
{path, error} for an input that cannot be read. The exit status is 1 only when every input failed.
"""
from __future__ import annotations

import argparse

from ferkit.cli.options import (
    DefaultsHelpFormatter, add_recognizer_options, add_recursive_option, image_files, recognizer_from_args,
)


def register(sub) -> None:
    p = sub.add_parser(
        "predict", help="detect faces in images and classify their expressions",
        description="Detect faces in image files (or folders of them) and classify each face's expression.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON list to stdout: {path, faces: [...]} or {path, error} per input")
    out.add_argument("--csv", metavar="FILE", help="write one row per face (and per unreadable file) to FILE")
    p.add_argument("--save-annotated", metavar="DIR", help="write each image with boxes and labels into DIR")
    p.add_argument("--model", default="default", help="shipped model name, checkpoint .pt or exported .onnx")
    add_recognizer_options(p)
    add_recursive_option(p)
    p.add_argument("--batch-size", type=int, default=32, metavar="N",
                   help="images decoded and classified together: their faces share batched forward passes")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from ferkit.errors import FerkitError
    from ferkit.labels import EMOTIONS
    from ferkit.paths import check_writable

    if args.batch_size < 1:
        raise FerkitError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.csv:
        check_writable(args.csv, "--csv")  # written last: refuse it before the predictions, not after
    inputs = image_files(args.paths, args.recursive)
    try:
        rec = recognizer_from_args(args)
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

    from ferkit.batching import iter_batches
    from ferkit.errors import DataError
    from ferkit.inference.imageio import load_image

    annotated_dir = Path(args.save_annotated) if args.save_annotated else None
    if annotated_dir:
        annotated_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    used_names: set[str] = set()
    bar = tqdm(total=len(inputs), desc="predict", unit="img", file=sys.stderr, disable=None)
    for sl in iter_batches(len(inputs), args.batch_size):
        chunk = inputs[sl]
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
