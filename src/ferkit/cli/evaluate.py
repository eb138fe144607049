"""`ferkit evaluate`: every metric the field reports, as JSON or a table plus figures; with several models or
datasets, the cross-dataset table (Markdown and CSV)."""
from __future__ import annotations

import argparse

from ferkit.paths import SHIPPED_MODELS
from ferkit.transforms.views import TTA_MODES


def register(sub) -> None:
    from ferkit.cli.data import DATA_HELP, add_dataset_options

    p = sub.add_parser("evaluate", help="evaluate a model on a dataset split",
                       description="Evaluate a checkpoint (or a shipped model) on a dataset split. A model trained "
                                   "on another dataset is evaluated on the classes both share (matched by name); "
                                   "the report says which were left out. Several --model or --data values "
                                   "evaluate every model on every dataset and print the cross-dataset table "
                                   "(--out DIR writes it as cross_dataset.md and .csv).")
    p.add_argument("--data", required=True, nargs="+", metavar="PATH", help=DATA_HELP)
    p.add_argument("--split", default=None,
                   help="split: train, publictest (= val), privatetest, test, val, all; default: publictest for "
                        "FER2013 and FER+, else test, else val, else every face (CK+, JAFFE)")
    p.add_argument("--model", default=["default"], nargs="+", metavar="MODEL",
                   help=f"checkpoint file or shipped model name ({', '.join(SHIPPED_MODELS)})")
    p.add_argument("--occlusion", help="evaluate with this occlusion mask (upper, lower, left, right, ...)")
    p.add_argument("--tta", nargs="?", const="flip_crop", default=None, choices=TTA_MODES,
                   help="test-time augmentation (bare --tta: flip_crop); default: what the checkpoint says")
    p.add_argument("--exclude-leaks", action="store_true",
                   help="leave out test images that have an exact copy in the training split")
    p.add_argument("--detector", choices=("auto", "yunet", "haar"),
                   help="the dataset holds whole photos, not face crops: find each photo's face with this detector "
                        "(a photo without one counts as wrong and is reported)")
    p.add_argument("--backend", choices=("torch", "onnx"), default="torch",
                   help="torch: the float weights; onnx: the model's ONNX twin as the default CPU pipeline runs it "
                        "(INT8 where the shipped .onnx is)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", help="folder for the confusion matrices, ROC curves and report (the cross-dataset "
                                 "table with several models or datasets)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (the evaluation contract); a list of rows for the table")
    add_dataset_options(p, val_split=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json
    import sys

    from ferkit.deps import require

    require("torch", "sklearn", "matplotlib", for_what="evaluation")
    from ferkit.cli.data import dataset_options
    from ferkit.errors import FerkitError
    from ferkit.evaluation.evaluate import evaluate, evaluate_matrix, format_report, write_reports

    options = dataset_options(args)
    if len(args.model) > 1 or len(args.data) > 1:
        if args.occlusion or args.exclude_leaks or args.detector or args.backend != "torch":
            raise FerkitError("--occlusion, --exclude-leaks, --detector and --backend apply to one model on one "
                              "dataset; run them separately")
        table = evaluate_matrix(args.model, args.data, split=args.split, data_options=options, tta=args.tta,
                                batch_size=args.batch_size, device=args.device, progress=not args.json)
        if args.out:
            paths = table.write(args.out)
            print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
        print(json.dumps(table.table()) if args.json else table.to_markdown(), end="\n" if args.json else "")
        return 0
    result = evaluate(args.model[0], args.data[0], args.split, tta=args.tta, occlusion=args.occlusion,
                      batch_size=args.batch_size, device=args.device, progress=not args.json,
                      exclude_leaks=args.exclude_leaks, data_options=options, detector=args.detector,
                      backend=args.backend)
    if args.out:
        paths = write_reports(result, args.out)
        print(f"wrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.metrics))
    else:
        print(format_report(result.metrics), end="")
    return 0
