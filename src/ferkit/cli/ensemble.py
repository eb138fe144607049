"""`ferkit ensemble`: several checkpoints saved as one that averages their probabilities.

    ferkit ensemble runs/a/best.pt runs/b/best.pt --out ensemble.pt
"""
from __future__ import annotations

import argparse

from ferkit.cli.options import DefaultsHelpFormatter

from ferkit.transforms.views import TTA_MODES


def register(sub) -> None:
    p = sub.add_parser(
        "ensemble", help="combine checkpoints into one ensemble checkpoint",
        description="Combine two or more checkpoints (files or shipped names) into one checkpoint whose "
                    "prediction is the mean of the members' probabilities. The result works everywhere a "
                    "model does (evaluate, predict, explain, export). Members must share input size, "
                    "channels, labels and face crop.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("members", nargs="+", metavar="MODEL", help="checkpoint .pt files or shipped model names")
    p.add_argument("--out", required=True, metavar="FILE", help="the ensemble checkpoint to write")
    p.add_argument("--tta", choices=TTA_MODES, default=None,
                   help="the ensemble's inference TTA (default: the first member's)")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the file size)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ferkit.deps import require

    require("torch", for_what="combining checkpoints")
    from ferkit.models.ensemble import combine_checkpoints

    path = combine_checkpoints(args.members, args.out, tta=args.tta, half=args.half)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {len(args.members)} members)", file=sys.stderr)
    print(f"evaluate it with: ferkit evaluate --data DATA --model {path}", file=sys.stderr)
    return 0
