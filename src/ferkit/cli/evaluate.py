"""`ferkit evaluate`: every metric the field reports, as JSON or a table plus figures."""
from __future__ import annotations

import argparse

from ferkit.paths import SHIPPED_MODELS
from ferkit.transforms.views import TTA_MODES


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a model on a dataset split",
                       description="Evaluate a checkpoint (or a shipped model) on a dataset split.")
    p.add_argument("--data", required=True, help="dataset path (FER2013 folder, zip or csv)")
    p.add_argument("--split", default="publictest", help="split: train, publictest (= val), privatetest, test")
    p.add_argument("--model", default="default",
                   help=f"checkpoint file or shipped model name ({', '.join(SHIPPED_MODELS)})")
    p.add_argument("--occlusion", help="evaluate with this occlusion mask (upper, lower, left, right, ...)")
    p.add_argument("--tta", nargs="?", const="flip_crop", default=None, choices=TTA_MODES,
                   help="test-time augmentation (bare --tta: flip_crop); default: what the checkpoint says")
    p.add_argument("--exclude-leaks", action="store_true",
                   help="leave out test images that have an exact copy in the training split")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for the confusion matrices, ROC curves and report")
    p.add_argument("--json", action="store_true", help="print one JSON object (the evaluation contract)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ferkit.evaluation.evaluate import evaluate, format_report, write_reports

    result = evaluate(args.model, args.data, args.split, tta=args.tta, occlusion=args.occlusion,
                      batch_size=args.batch_size, device=args.device, progress=not args.json,
                      exclude_leaks=args.exclude_leaks)
    if args.out:
        paths = write_reports(result, args.out)
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.metrics))
    else:
        print(format_report(result.metrics), end="")
    return 0
