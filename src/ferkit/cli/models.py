"""`ferkit models`: the model zoo with parameter counts and FLOPs at the default size and at 48x48."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    parser = sub.add_parser(
        "models", help="list the available architectures with parameters and FLOPs",
        description="List every registered architecture: description, default input size, parameters and "
                    "GFLOPs (2 x multiply-accumulates, batch 1) at the default size and at 48x48.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these models (default: all)")
    parser.add_argument("--num-classes", type=int, default=7, help="classifier outputs (default: 7)")
    parser.add_argument("--json", action="store_true", help="print one JSON list instead of a table")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ferkit.deps import require

    require("torch", for_what="listing the architectures")
    from ferkit.models import get_entry, list_models
    from ferkit.models.profile import profile_model

    entries = [get_entry(name) for name in args.names] if args.names else list_models()
    rows = []
    for entry in entries:
        at_default = profile_model(entry.name, num_classes=args.num_classes)
        small = at_default if entry.default_input_size == 48 else profile_model(
            entry.name, input_size=48, num_classes=args.num_classes)
        rows.append({
            "name": entry.name,
            "description": entry.description,
            "default_input_size": entry.default_input_size,
            "in_chans": entry.default_in_chans,
            "num_classes": args.num_classes,
            "params": at_default.params,
            "gflops": round(at_default.gflops, 4),
            "params_48": small.params,
            "gflops_48": round(small.gflops, 4),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0

    header = f"{'model':<20} {'size':>4} {'params':>13} {'GFLOPs':>8} {'params@48':>13} {'GFLOPs@48':>9}  description"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<20} {r['default_input_size']:>4} {r['params']:>13,} {r['gflops']:>8.3f} "
              f"{r['params_48']:>13,} {r['gflops_48']:>9.3f}  {r['description']}")
    print(f"\n{len(rows)} models; {rows[0]['in_chans'] if rows else 1}-channel input, {args.num_classes} classes. "
          "GFLOPs = 2 x multiply-accumulates of one forward pass (batch 1), convolutions/matmuls/attention.")
    return 0
