"""`ferkit explain`: heatmaps of where a model looks, for photos, face crops or a whole dataset split.

    ferkit explain IMAGE|DIR... [--method gradcam,saliency,...] [--target EMOTION] [--layer NAME]
                   [--model default|CKPT] [--detector NAME|none] [--json] --out DIR
    ferkit explain --dataset PATH --split NAME [--limit N] [--method ...] --out DIR

The work is ``ferkit.analysis.explain_image`` and ``ferkit.analysis.explain_dataset``; this module
parses, calls and says where the outputs went.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ferkit.cli.options import DefaultsHelpFormatter, add_recognizer_options, add_recursive_option

IMAGE_METHODS = "gradcam"
DATASET_METHODS = "gradcam,saliency,occlusion"
# The methods' own options, as flags. Each goes to the methods that take it and is refused when none of the
# chosen methods does (ferkit.analysis.explain.METHODS says which take which).
METHOD_OPTIONS = ("layer", "patch", "stride", "samples", "noise")
DATASET_DEFAULTS = {"split": "test", "limit": 200}


def register(sub) -> None:
    p = sub.add_parser(
        "explain", help="heatmaps of where the model looks (Grad-CAM, saliency, occlusion, feature maps)",
        description="Explain a model's predictions. On photos, faces are found, cropped and classified exactly as "
                    "`ferkit predict` does (same flags, same probabilities) and each face gets an overlay PNG per "
                    "method (heatmap on the face; predicted emotion and probability in the title). With "
                    "--dataset, the average map per true emotion over a split, a one-page grid and the share of "
                    "heat in the upper/lower and left/right halves per emotion (left/right as the viewer sees "
                    "the image).",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("inputs", nargs="*", metavar="IMAGE|DIR", help="image files or folders of images")
    p.add_argument("--dataset", metavar="PATH", help="explain a dataset split instead of images")
    p.add_argument("--split", default=DATASET_DEFAULTS["split"],
                   help="dataset split (train, publictest, privatetest, val, test)")
    p.add_argument("--limit", type=int, default=DATASET_DEFAULTS["limit"], metavar="N",
                   help="dataset mode: at most N faces per emotion, drawn at random with a fixed seed (0 = all)")
    p.add_argument("--method", metavar="M[,M...]",
                   help=f"gradcam, saliency, smoothgrad, occlusion, features, comma-separated "
                        f"(default {IMAGE_METHODS} for images, {DATASET_METHODS} for --dataset)")
    p.add_argument("--target", metavar="EMOTION",
                   help="explain this emotion (name or class index) instead of the predicted one; "
                        "dataset mode always explains the true emotion")
    p.add_argument("--layer", metavar="NAME", help="gradcam, features: the layer (default: the last spatial one)")
    p.add_argument("--patch", type=int, metavar="PX", help="occlusion: side of the hidden square (default: a sixth "
                                                           "of the input side)")
    p.add_argument("--stride", type=int, metavar="PX", help="occlusion: step between squares (default: half a patch)")
    p.add_argument("--samples", type=int, metavar="N", help="smoothgrad: noisy copies per face (default 25)")
    p.add_argument("--noise", type=float, metavar="SIGMA",
                   help="smoothgrad: noise level, a fraction of each face's value range (default 0.15)")
    p.add_argument("--model", default="default", help="shipped model name or checkpoint file")
    add_recognizer_options(p)
    add_recursive_option(p)
    p.add_argument("--json", action="store_true",
                   help="print the results, raw maps included, as JSON (also saved to OUT/explanations.json)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.deps import require
    from ferkit.errors import FerkitError

    require("torch", "matplotlib", for_what="explanations")
    from ferkit.analysis.explain import method_options

    if bool(args.inputs) == bool(args.dataset):
        raise FerkitError("give image files/folders or --dataset PATH (one of the two)")
    if str(args.model).endswith(".onnx"):
        raise FerkitError(f"{args.model} is an ONNX export; heatmaps need the PyTorch model: give the checkpoint "
                          f"(.pt) it was exported from, or a shipped model name")
    methods = [m.strip() for m in (args.method or (DATASET_METHODS if args.dataset else IMAGE_METHODS)).split(",")
               if m.strip()]
    options = {dest: getattr(args, dest) for dest in METHOD_OPTIONS}
    method_options(methods, options)  # unknown methods, options no chosen method takes: before loading anything
    if args.dataset:
        return _run_dataset(args, methods, options)
    return _run_images(args, methods, options)


# ------------------------------------------------------------------------------------------- images
def _run_images(args: argparse.Namespace, methods: list[str], options: dict[str, Any]) -> int:
    import json

    from ferkit.analysis.explain import check_explanation
    from ferkit.analysis.explain_faces import explain_image, maps_model
    from ferkit.cli.options import image_files, recognizer_from_args
    from ferkit.errors import FerkitError
    from ferkit.inference.imageio import load_image

    changed = [f"--{k}" for k, default in DATASET_DEFAULTS.items() if getattr(args, k) != default]
    if changed:
        raise FerkitError(f"{', '.join(changed)}: for --dataset only, not for image files")
    files = image_files(args.inputs, args.recursive)
    rec = recognizer_from_args(args)
    model = None  # the Recognizer's own torch model
    if rec.backend != "torch":  # ONNX Runtime states the probabilities (as predict's), torch draws the maps
        from ferkit.models.checkpoint import load_model

        model = load_model(args.model, device=args.device)
    net, config = maps_model(rec, model)
    check_explanation(net, config, methods, args.target, device=next(net.parameters()).device, **options)
    args.out.mkdir(parents=True, exist_ok=True)

    results: list[dict[str, Any]] = []
    written = 0
    stems: set[str] = set()
    for path in files:
        try:
            image = load_image(path)
        except FerkitError as exc:  # an unreadable input gets its error entry, as in `ferkit predict`
            results.append({"path": str(path), "error": str(exc)})
            if not args.json:
                print(f"{path}: skipped: {exc}")
            continue
        stem = _unique(path.stem, stems)
        faces = explain_image(rec, image, methods, target=args.target, model=model, color="rgb", **options)
        entry: dict[str, Any] = {"path": str(path), "faces": []}
        for i, face in enumerate(faces):
            pngs = face.save(args.out, f"{stem}_face{i}")
            entry["faces"].append(face.to_dict(pngs))
            written += len(pngs)
            if args.json:
                continue
            if not pngs:
                print(f"{path}: face {i} at {list(face.face.box)} is under --min-face {args.min_face} px: "
                      "not explained")
            for png in pngs.values():
                print(f"{png}  ({face.face.emotion} {face.face.probs[face.face.emotion]:.2f})")
        if not faces and not args.json:
            print(f"{path}: no face found")
        results.append(entry)

    n_err = sum("error" in r for r in results)
    if args.json:
        text = json.dumps(results)
        (args.out / "explanations.json").write_text(text)
        print(text)
    else:
        print(f"wrote {written} PNG(s) for {len(results) - n_err} image(s) to {args.out}"
              + (f"; {n_err} input(s) could not be read" if n_err else ""))
    return 0 if len(results) > n_err else 2


def _unique(stem: str, seen: set[str]) -> str:
    name, k = stem, 1
    while name in seen:
        k += 1
        name = f"{stem}_{k}"
    seen.add(name)
    return name


# ------------------------------------------------------------------------------------------ dataset
def _run_dataset(args: argparse.Namespace, methods: list[str], options: dict[str, Any]) -> int:
    import json

    from ferkit.analysis.explain import check_explanation
    from ferkit.analysis.emotion_maps import explain_dataset
    from ferkit.cli.options import changed_recognizer_options
    from ferkit.data import load_dataset
    from ferkit.devices import resolve_device
    from ferkit.errors import FerkitError
    from ferkit.models.checkpoint import load_model

    if args.target is not None:
        raise FerkitError("--target does not apply to --dataset: each face's map explains its true emotion")
    changed = changed_recognizer_options(args) + (["--recursive"] if args.recursive else [])
    if changed:
        raise FerkitError(f"{', '.join(changed)}: for photos only; --dataset faces are already cropped")
    if args.limit < 0:
        raise FerkitError(f"--limit must be 0 (all) or a positive number of faces per emotion, got {args.limit}")
    device = resolve_device(args.device)
    model, config = load_model(args.model, device=device)
    check_explanation(model, config, methods, device=device, **options)
    dataset = load_dataset(args.dataset)
    result = explain_dataset(model, config, dataset, methods, split=args.split, per_class=args.limit,
                             device=device, progress=True, **options)
    files = result.save(args.out, title=f"{Path(args.model).stem} ({config.arch}) on "
                                        f"{dataset.name or Path(args.dataset).name} {args.split}: "
                                        "mean maps per true emotion")

    if args.json:
        print(json.dumps({"dataset": str(args.dataset), **result.to_dict(),
                          "files": {"summary": str(files.summary), "table": str(files.table),
                                    "maps": str(files.maps)}}, indent=2))
        return 0
    per_emotion = ", ".join(f"{e} {c}" for e, c in zip(result.emotions, result.counts))
    print(f"{result.n:,} faces of {args.split} ({per_emotion}); model accuracy on them {result.accuracy:.1%}")
    print("share of heat per emotion (left/right as the viewer sees the image):")
    print(f"{'method':<11}{'emotion':<10}{'n':>6}{'upper':>8}{'lower':>8}{'left':>8}{'right':>8}")
    for r in result.regions:
        print(f"{r['method']:<11}{r['emotion']:<10}{r['n']:>6}{r['upper']:>8.3f}{r['lower']:>8.3f}"
              f"{r['left']:>8.3f}{r['right']:>8.3f}")
    print(f"wrote {files.summary}, {files.table} and {files.maps}")
    return 0
