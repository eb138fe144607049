"""`ferkit ensemble`: several checkpoints saved as one that averages their probabilities.

    ferkit ensemble runs/a/best.pt runs/b/best.pt --out ensemble.pt
    ferkit ensemble --weight-average --mix 0.6,0.4 runs/robust/best.pt default --out wise.pt
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
                    "channels, labels and face crop. With --weight-average the members (fine-tunes of one "
                    "base, one architecture) are merged into one network of their mean weights instead: one "
                    "network's cost at inference.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("members", nargs="+", metavar="MODEL", help="checkpoint .pt files or shipped model names")
    p.add_argument("--out", required=True, metavar="FILE", help="the ensemble checkpoint to write")
    p.add_argument("--tta", choices=TTA_MODES, default=None,
                   help="the ensemble's inference TTA (default: the first member's)")
    p.add_argument("--half", action="store_true", help="store the weights as float16 (half the file size)")
    p.add_argument("--weight-average", action="store_true",
                   help="one network whose weights are the members' weighted mean (a model soup; with a "
                        "fine-tune and its base, WiSE-FT), instead of a mean of probabilities")
    p.add_argument("--mix", type=_shares, default=None, metavar="W1,W2,...",
                   help="with --weight-average: each member's share, summing to 1 (default: equal shares)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from ferkit.deps import require

    require("torch", for_what="combining checkpoints")
    from ferkit.errors import FerkitError
    from ferkit.models.ensemble import average_weights, combine_checkpoints, weight_shares

    if args.weight_average:
        if args.half:
            raise FerkitError("--half applies to probability ensembles; a weight average keeps its members' dtype")
        path = average_weights(args.members, args.out, mix=args.mix, tta=args.tta)
        what = "weight average of " + ", ".join(
            f"{m} x {s:g}" for m, s in zip(args.members, weight_shares(len(args.members), args.mix)))
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {what})", file=sys.stderr)
    else:
        if args.mix is not None:
            raise FerkitError("--mix needs --weight-average")
        path = combine_checkpoints(args.members, args.out, tta=args.tta, half=args.half)
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB; {len(args.members)} members)", file=sys.stderr)
    print(f"evaluate it with: ferkit evaluate --data DATA --model {path}", file=sys.stderr)
    return 0


def _shares(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.6,0.4; got {text!r}")
