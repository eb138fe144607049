"""`ferkit explain`: heatmaps of where a model looks, for photos, face crops or a whole dataset split.

    ferkit explain IMAGE|DIR... [--method gradcam,saliency,...] [--target EMOTION] [--layer NAME]
                   [--model default|CKPT] [--detector NAME|none] [--json] --out DIR
    ferkit explain --dataset PATH --split NAME [--limit N] [--method ...] --out DIR
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

IMAGE_METHODS = "gradcam"
MIN_FACE = 20  # pixels, shorter box side: the Recognizer's default; smaller faces are not classified
DISPLAY_SIZE = 192  # overlay resolution for detected faces
DATASET_METHODS = "gradcam,saliency,occlusion"


def register(sub) -> None:
    p = sub.add_parser(
        "explain", help="heatmaps of where the model looks (Grad-CAM, saliency, occlusion, feature maps)",
        description="Explain a model's predictions. On photos, faces are detected first and each face gets an "
                    "overlay PNG per method (heatmap on the face; predicted emotion and probability in the "
                    "title). With --dataset, the average map per true emotion over a split, a one-page grid "
                    "and the share of heat in the upper/lower and left/right halves per emotion "
                    "(left/right as the viewer sees the image).",
    )
    p.add_argument("inputs", nargs="*", metavar="IMAGE|DIR", help="image files or folders of images")
    p.add_argument("--dataset", metavar="PATH", help="explain a dataset split instead of images")
    p.add_argument("--split", default="test", help="dataset split (train, publictest, privatetest, val, test)")
    p.add_argument("--limit", type=int, default=200, metavar="N",
                   help="dataset mode: at most N faces per emotion, drawn at random with a fixed seed (200; 0 = all)")
    p.add_argument("--method", metavar="M[,M...]",
                   help=f"gradcam, saliency, smoothgrad, occlusion, features, comma-separated "
                        f"(default {IMAGE_METHODS} for images, {DATASET_METHODS} for --dataset)")
    p.add_argument("--target", metavar="EMOTION",
                   help="explain this emotion (name or class index) instead of the predicted one; "
                        "dataset mode always explains the true emotion")
    p.add_argument("--layer", metavar="NAME", help="layer for gradcam/features (default: the last spatial layer)")
    p.add_argument("--model", default="default", help="shipped model name or checkpoint file (default)")
    p.add_argument("--detector", default="auto",
                   help="face detector for photos: auto (YuNet if available, else Haar), yunet, haar, or none "
                        "to treat each image as one face crop (auto)")
    p.add_argument("--device", default="cpu", help="torch device (cpu)")
    p.add_argument("--json", action="store_true",
                   help="print the results, raw maps included, as JSON (also saved to OUT/explanations.json)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.errors import FerkitError
    from ferkit.analysis.explain import check_method

    if bool(args.inputs) == bool(args.dataset):
        raise FerkitError("give image files/folders or --dataset PATH (one of the two)")
    default = DATASET_METHODS if args.dataset else IMAGE_METHODS
    methods = [m.strip() for m in (args.method or default).split(",") if m.strip()]
    for m in methods:
        check_method(m)
    if args.dataset and args.target is not None:
        raise FerkitError("--target does not apply to --dataset: each face's map explains its true emotion")
    if args.limit < 0:
        raise FerkitError(f"--limit must be 0 (all) or a positive number of faces per emotion, got {args.limit}")

    from ferkit.models.checkpoint import load_model

    model, config = load_model(args.model, device=args.device)
    _check_options(model, config, methods, args)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.dataset:
        return _run_dataset(model, config, methods, args)
    return _run_images(model, config, methods, args)


def _check_options(model, config, methods: list[str], args: argparse.Namespace) -> None:
    """Fail before any work on a bad --target or --layer (or a model Grad-CAM cannot explain)."""
    import torch

    from ferkit.errors import FerkitError
    from ferkit.analysis.explain import feature_maps, resolve_target

    if args.target is not None:
        resolve_target(args.target, torch.zeros(1, config.num_classes), config.labels)
    layered = [m for m in methods if m in ("gradcam", "features")]
    if args.layer and not layered:
        raise FerkitError("--layer applies to the gradcam and features methods only")
    if layered:
        probe = torch.zeros(1, config.in_chans, config.input_size, config.input_size, device=args.device)
        feature_maps(model, probe, args.layer)


# ------------------------------------------------------------------------------------------- images
def _image_files(inputs: list[str]) -> list[Path]:
    from ferkit.errors import FerkitError
    from ferkit.inference.imageio import IMAGE_SUFFIXES

    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FerkitError(f"{path}: no image files in this folder "
                                  f"(looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
            files += found
        else:
            files.append(path)  # missing or unreadable files become an `error` entry, as in `ferkit predict`
    return files


def _face_finder(args: argparse.Namespace, config):
    """image (H x W x 3 RGB uint8) -> list of faces {box, score, landmarks, crop, display}.

    The one place `ferkit explain` touches face detection. It makes the crops exactly as the Recognizer does
    (``ferkit.inference.detectors``: detector by name, aligned crop of the model's ``crop_size`` with its ``crop_margin``,
    faces under ``MIN_FACE`` pixels skipped), so a map explains the prediction `ferkit predict` reports;
    ``display`` is the part of the crop the model sees (its centre ``face_crop``), at a resolution fit for
    the overlay.
    """
    from ferkit.transforms.views import centre_window

    def seen(display):
        rows, cols = centre_window(display.shape[0], display.shape[1], config.face_crop)
        return display[rows, cols]

    if args.detector == "none":
        def whole(image):
            h, w = image.shape[:2]
            return [{"box": [0, 0, int(w), int(h)], "score": None, "landmarks": None, "crop": image,
                     "display": seen(image)}]
        return whole

    from ferkit.inference.align import crop_faces
    from ferkit.inference.detectors import create_detector

    detector = create_detector(args.detector, min_face=MIN_FACE // 2)
    size = config.crop_size
    shown = max(size, DISPLAY_SIZE)

    def detect(image):
        dets = [d for d in detector.detect(image, "rgb") if min(d.box[2], d.box[3]) >= MIN_FACE]
        if not dets:
            return []
        crops = crop_faces(image, dets, size, config.crop_margin)
        display = crop_faces(image, dets, shown, config.crop_margin)
        return [{
            "box": [int(round(v)) for v in d.box], "score": round(float(d.score), 4),
            "landmarks": None if d.landmarks is None else [[float(x), float(y)] for x, y in d.landmarks],
            "crop": crop, "display": seen(big),
        } for d, crop, big in zip(dets, crops, display)]

    return detect


def _run_images(model, config, methods: list[str], args: argparse.Namespace) -> int:
    import json

    import numpy as np

    from ferkit.errors import FerkitError
    from ferkit.analysis.explain import explain
    from ferkit.inference.imageio import load_image
    from ferkit.plots.explain import save_feature_grid, save_overlay

    files = _image_files(args.inputs)
    find_faces = _face_finder(args, config)
    results: list[dict[str, Any]] = []
    written: list[str] = []
    stems: set[str] = set()
    for path in files:
        try:
            image = load_image(path)
        except FerkitError as exc:
            results.append({"path": str(path), "error": str(exc)})
            if not args.json:
                print(f"{path}: skipped: {exc}")
            continue
        stem = _unique(path.stem, stems)
        faces = find_faces(image)
        entry: dict[str, Any] = {"path": str(path), "faces": []}
        for i, face in enumerate(faces):
            record = {k: face[k] for k in ("box", "score", "landmarks")}
            record["explanations"] = {}
            for method in methods:
                e = explain(model, np.array(face["crop"])[None], config, method, args.target,
                            layer=_layer_for(method, args.layer), device=args.device)
                data = e.face_json(0)
                record.update(emotion=data["emotion"], probs=data["probs"])
                pred, prob = data["emotion"], data["score"]
                title = f"{pred} {prob:.0%}  ·  {method}"
                if data["target"] != pred:
                    title += f" for {data['target']}"
                if e.layer:
                    title += f" @ {e.layer}"
                png = args.out / f"{stem}_face{i}_{method}.png"
                if method == "features":
                    save_feature_grid(png, e.features[0], title)
                else:
                    save_overlay(png, face["display"], e.maps[0], title)
                written.append(str(png))
                record["explanations"][method] = {k: data[k] for k in ("target", "layer", "map")} | {"png": str(png)}
                if not args.json:
                    print(f"{png}  ({pred} {prob:.2f})")
            entry["faces"].append(record)
        if not faces and not args.json:
            print(f"{path}: no face found")
        results.append(entry)

    if args.json:
        text = json.dumps(results)
        (args.out / "explanations.json").write_text(text)
        print(text)
    else:
        n_err = sum("error" in r for r in results)
        print(f"wrote {len(written)} PNG(s) for {len(results) - n_err} image(s) to {args.out}"
              + (f"; {n_err} input(s) could not be read" if n_err else ""))
    return 0 if len(results) > sum("error" in r for r in results) else 2


def _layer_for(method: str, layer: str | None) -> str | None:
    return layer if method in ("gradcam", "features") else None


def _unique(stem: str, seen: set[str]) -> str:
    name, k = stem, 1
    while name in seen:
        k += 1
        name = f"{stem}_{k}"
    seen.add(name)
    return name


# ------------------------------------------------------------------------------------------ dataset
def _run_dataset(model, config, methods: list[str], args: argparse.Namespace) -> int:
    import csv
    import json

    import numpy as np
    import torch
    import torch.nn.functional as F

    from ferkit.data import load_dataset
    from ferkit.errors import FerkitError
    from ferkit.analysis.explain import explain, heat_shares
    from ferkit.plots.explain import save_summary_grid
    from ferkit.transforms.preprocess import centre_crop, match_channels, uint8_to_nchw

    ds = load_dataset(args.dataset).split(args.split)
    labels = list(config.labels)
    # Dataset classes the model does not know (e.g. contempt for a 7-class model) cannot be explained.
    to_model = np.array([labels.index(n) if n in labels else -1 for n in ds.label_names])
    true = to_model[ds.labels]
    rng = np.random.default_rng(0)
    chosen = []
    for k in range(len(labels)):
        idx = np.flatnonzero(true == k)
        if args.limit and len(idx) > args.limit:
            idx = np.sort(rng.choice(idx, args.limit, replace=False))
        chosen.append(idx)
    index = np.concatenate(chosen)
    if not len(index):
        raise FerkitError(f"split {args.split!r} has no faces of the model's classes ({', '.join(labels)})")
    faces, targets = ds.images[index], true[index]
    counts = np.bincount(targets, minlength=len(labels))
    emotions = [lab for lab, c in zip(labels, counts) if c > 0]
    present = [labels.index(e) for e in emotions]

    size = config.input_size
    mean_maps: dict[str, np.ndarray] = {}
    correct = 0
    for method in methods:
        e = explain(model, faces, config, method, targets, layer=_layer_for(method, args.layer), device=args.device,
                    progress=True)
        correct = int((e.predicted == targets).sum())
        sums = np.zeros((len(labels), size, size))
        np.add.at(sums, targets, e.maps)
        mean_maps[method] = (sums / np.maximum(counts, 1)[:, None, None])[present]
    # The background of each column: the average face of the emotion, as the model sees it (gray, input size).
    x = centre_crop(match_channels(uint8_to_nchw(faces).float(), 1), config.face_crop)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)[:, 0]
    sum_faces = torch.zeros(len(labels), size, size).index_add_(0, torch.as_tensor(targets), x)
    mean_faces = (sum_faces / torch.as_tensor(np.maximum(counts, 1)).view(-1, 1, 1))[present]
    mean_faces = mean_faces.round().clamp(0, 255).to(torch.uint8).numpy()

    rows = []
    for method, maps in mean_maps.items():
        shares = heat_shares(maps)
        for j, emotion in enumerate(emotions):
            rows.append({"emotion": emotion, "method": method, "n": int(counts[present[j]]),
                         **{k: round(float(v[j]), 4) for k, v in shares.items()}})
    grid = save_summary_grid(
        args.out / "summary.png", mean_maps, emotions, mean_faces, [int(counts[k]) for k in present],
        title=f"{Path(args.model).stem} ({config.arch}) on {ds.name or Path(args.dataset).name} {args.split}:"
              " mean maps per true emotion",
    )
    table = args.out / "regions.csv"
    with table.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    np.savez_compressed(args.out / "mean_maps.npz", emotions=np.array(emotions),
                        **{m: v.astype(np.float32) for m, v in mean_maps.items()})

    if args.json:
        print(json.dumps({"dataset": str(args.dataset), "split": args.split, "n": int(len(index)),
                          "accuracy": round(correct / len(index), 4), "methods": methods, "regions": rows,
                          "files": {"summary": str(grid), "table": str(table),
                                    "maps": str(args.out / "mean_maps.npz")}}, indent=2))
        return 0
    print(f"{len(index):,} faces of {args.split} ({', '.join(f'{e} {counts[k]}' for e, k in zip(emotions, present))}); "
          f"model accuracy on them {correct / len(index):.1%}")
    print("share of heat per emotion (left/right as the viewer sees the image):")
    print(f"{'method':<11}{'emotion':<10}{'n':>6}{'upper':>8}{'lower':>8}{'left':>8}{'right':>8}")
    for r in rows:
        print(f"{r['method']:<11}{r['emotion']:<10}{r['n']:>6}{r['upper']:>8.3f}{r['lower']:>8.3f}"
              f"{r['left']:>8.3f}{r['right']:>8.3f}")
    print(f"wrote {grid}, {table} and {args.out / 'mean_maps.npz'}")
    return 0
