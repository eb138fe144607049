"""`ferkit study`: the trained-on x evaluated-on occlusion table (see ferkit.analysis.study for the full command)."""
from __future__ import annotations

import argparse


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def register(sub) -> None:
    p = sub.add_parser(
        "study", help="occlusion study: fine-tune per mask, evaluate every model under every mask",
        description="Fine-tune one copy of a base model per occlusion mask (full + masked faces), evaluate every "
                    "model under every mask and write matrix.csv/.md, heatmaps, per-class scores and a "
                    "region-importance summary into OUT. Rerun the same command to resume.")
    p.add_argument("--data", required=True, help="dataset path (FER2013 folder, zip or csv)")
    p.add_argument("--out", required=True, help="study folder (runs, cached cells, tables, figures)")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--base", help="checkpoint of the base model trained on full faces (or a shipped name)")
    base.add_argument("--train-base", action="store_true", help="train the base first, into OUT/base")
    p.add_argument("--model", help="--train-base: architecture (default: the recipe's)")
    p.add_argument("--recipe", default="default", help="--train-base: training recipe (default, fast)")
    p.add_argument("--base-epochs", type=int, help="--train-base: epochs (default: the recipe's)")
    p.add_argument("--finetune", type=_names, default=None,
                   help="masks to fine-tune a copy on (default: upper,lower,right,left)")
    p.add_argument("--evaluate", type=_names, default=None,
                   help="conditions to evaluate on (default: full,upper,lower,right,left; "
                        "also forehead, eyes, mouth)")
    p.add_argument("--eval-split", default="test", help="split to evaluate on (default: test = both test halves)")
    p.add_argument("--epochs", type=int, help="fine-tune epochs (default 10; 1 with --quick)")
    p.add_argument("--lr-scale", type=float, default=0.1, help="fine-tune peak lr as a multiple of the base's")
    p.add_argument("--mask-prob", type=float, default=0.5, help="share of fine-tune images masked")
    p.add_argument("--robust", nargs="+", default=[], metavar="[NAME=]CKPT",
                   help="extra rows: models evaluated as they are (e.g. trained with random occlusion)")
    p.add_argument("--tta", default="none", help="evaluation TTA (default none: a flip swaps left and right masks)")
    p.add_argument("--eval-limit", type=int, default=0, help="evaluate on a fixed random subset of N images")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 1 epoch of 20 steps per training run, 500 evaluation images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from ferkit.deps import require

    require("torch", "sklearn", "matplotlib", for_what="an occlusion study")
    from ferkit.analysis.study import DEFAULT_EVALUATE, DEFAULT_FINETUNE, StudyConfig, format_table, run_study

    cfg = StudyConfig(
        data=args.data, out=args.out, base=args.base, train_base=args.train_base, model=args.model,
        recipe=args.recipe, base_epochs=args.base_epochs,
        finetune=args.finetune if args.finetune is not None else list(DEFAULT_FINETUNE),
        evaluate=args.evaluate if args.evaluate is not None else list(DEFAULT_EVALUATE),
        eval_split=args.eval_split, epochs=args.epochs, finetune_lr_scale=args.lr_scale, mask_prob=args.mask_prob,
        extra=args.robust, tta=args.tta, eval_limit=args.eval_limit, quick=args.quick, seed=args.seed,
        device=args.device, threads=args.threads, progress=not args.no_progress,
        command="ferkit " + shlex.join(sys.argv[1:]),
    )
    from tqdm.contrib.logging import logging_redirect_tqdm

    with logging_redirect_tqdm():  # log lines above the progress bar instead of through it
        result = run_study(cfg)
    print(f"accuracy on {result.split} ({result.n} images):")
    print(format_table(result, "accuracy"))
    print("region that hurts each emotion most (base model, drop in per-class accuracy):")
    for emotion, r in result.region_importance["per_class"].items():
        worst = f"{r['worst']:<9} {r['worst_drop']:+.3f}" if r["worst"] else "none (no region lowers it)"
        print(f"  {emotion:<9} {worst}  (full {r['recall_full']:.3f})")
    print(f"wrote {result.out}/: " + ", ".join(p.name for p in result.files), file=sys.stderr)
    print(f"done in {result.seconds / 60:.1f} min", file=sys.stderr)
    return 0
