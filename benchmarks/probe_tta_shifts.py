"""Which whole-pixel shifts are worth averaging at test time: accuracy of one model on a split when its logits
are averaged over the face and its mirror image, each moved by the given sets of shifts (edge pixels repeated,
as the `flip_shift` TTA does).

    python benchmarks/probe_tta_shifts.py --data ../shared/data/fer2013.zip [--model default] [--split publictest]

Every view is classified once and the sets are scored from the same logits, so the rows differ only in which
views they average. `cross2` (2 px up, down, left and right at 40 px) is what `flip_shift` averages.
"""
from __future__ import annotations

import argparse
import json


def shift_sets() -> dict[str, list[tuple[int, int]]]:
    def cross(d: int) -> list[tuple[int, int]]:
        return [(0, 0), (-d, 0), (d, 0), (0, -d), (0, d)]

    def box(d: int) -> list[tuple[int, int]]:
        return cross(d) + [(-d, -d), (-d, d), (d, -d), (d, d)]

    return {"flip only": [(0, 0)], "cross1": cross(1), "cross2": cross(2), "cross3": cross(3),
            "cross1+2": list(dict.fromkeys(cross(1) + cross(2))), "box1": box(1), "box2": box(2),
            "all within 2": [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--split", default="publictest")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from ferkit.checkpoint import load_model
    from ferkit.data import load_dataset
    from ferkit.preprocess import faces_to_tensor

    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.model)
    split = load_dataset(args.data).split(args.split)
    y = torch.as_tensor(split.labels)
    x = faces_to_tensor(split.images, cfg)
    sets = shift_sets()
    shifts = sorted({s for v in sets.values() for s in v})
    side, pad = x.shape[-1], max(max(abs(a), abs(b)) for a, b in shifts)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    logits = {}
    with torch.inference_mode():
        for (dy, dx) in tqdm(shifts, desc="views", unit="shift"):
            view = padded[..., pad + dy:pad + dy + side, pad + dx:pad + dx + side]
            for flip in (False, True):
                v = view.flip(-1) if flip else view
                logits[flip, dy, dx] = torch.cat([model(v[i:i + 512]).float() for i in range(0, len(v), 512)])
    rows = []
    for name, chosen in sets.items():
        keys = [(flip, dy, dx) for flip in (False, True) for dy, dx in chosen]
        mean = torch.stack([logits[k] for k in keys]).mean(0)
        rows.append({"shifts": name, "views": len(keys), "accuracy": float((mean.argmax(1) == y).float().mean())})
    if args.json:
        print(json.dumps({"model": args.model, "split": args.split, "rows": rows}, indent=2))
        return
    print(f"| shifts ({args.model}, {args.split}, {len(y)} faces) | views | accuracy |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['shifts']} | {r['views']} | {100 * r['accuracy']:.2f}% |")


if __name__ == "__main__":
    main()
