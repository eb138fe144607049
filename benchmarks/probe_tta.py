"""Which test-time views are worth averaging: accuracy and macro F1 of one model on a split when its logits are
averaged over the face and its mirror image, each also moved, turned or zoomed as a named set of views says.

    python benchmarks/probe_tta.py --data ../shared/data/fer2013.zip --sets shifts [--model default] [--split publictest]
    python benchmarks/probe_tta.py --data ../shared/data/fer2013.zip --sets views  [--model default]

`--sets shifts` compares whole-pixel shifts (edge pixels repeated, as `flip_shift` does: `cross2`, 2 px up,
down, left and right at 40 px, is what it averages); `--sets views` adds to `flip_shift` copies of the face
turned by a few degrees or magnified and shrunk by a few per cent (bilinear about the centre, edge pixels
repeated). Every view is classified once and the sets are scored from the same logits, so the rows differ only
in which views they average.
"""
from __future__ import annotations

import argparse
import json
import math

# A view is a whole-pixel shift (dy, dx), or ("rot", degrees) / ("zoom", factor) resampled about the centre.
View = tuple


def cross(d: int) -> list[View]:
    return [(0, 0), (-d, 0), (d, 0), (0, -d), (0, d)]


def shift_sets() -> dict[str, list[View]]:
    def box(d: int) -> list[View]:
        return cross(d) + [(-d, -d), (-d, d), (d, -d), (d, d)]

    return {"flip only": [(0, 0)], "cross1": cross(1), "cross2": cross(2), "cross3": cross(3),
            "cross1+2": list(dict.fromkeys(cross(1) + cross(2))), "box1": box(1), "box2": box(2),
            "all within 2": [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]}


def view_sets(step: int) -> dict[str, list[View]]:
    shifts = cross(step)  # flip_shift's views at this input size

    def rot(a: float) -> list[View]:
        return [("rot", a), ("rot", -a)]

    def zoom(p: float) -> list[View]:
        return [("zoom", 1 + p / 100), ("zoom", 1 - p / 100)]

    return {"flip": [(0, 0)], "flip_shift (shipped)": shifts, "flip + rotate 6": [(0, 0)] + rot(6),
            "flip + zoom 6%": [(0, 0)] + zoom(6), "flip_shift + rotate 6": shifts + rot(6),
            "flip_shift + rotate 10": shifts + rot(10), "flip_shift + zoom 6%": shifts + zoom(6),
            "flip_shift + zoom 10%": shifts + zoom(10), "flip_shift + rotate 6 + zoom 6%": shifts + rot(6) + zoom(6)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--sets", choices=("shifts", "views"), default="shifts")
    ap.add_argument("--model", default="default")
    ap.add_argument("--split", default="publictest")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from sklearn.metrics import f1_score
    from tqdm import tqdm

    from ferkit.models.checkpoint import load_model
    from ferkit.data import load_dataset
    from ferkit.batching import iter_batches
    from ferkit.transforms.preprocess import faces_to_tensor

    torch.set_num_threads(args.threads)
    model, cfg = load_model(args.model)
    split = load_dataset(args.data).split(args.split)
    y = split.labels
    x = faces_to_tensor(split.images, cfg)
    side = x.shape[-1]
    sets = shift_sets() if args.sets == "shifts" else view_sets(max(1, round(side / 20)))
    views = list(dict.fromkeys(v for chosen in sets.values() for v in chosen))
    pad = max(abs(int(c)) for v in views if v[0] not in ("rot", "zoom") for c in v)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")

    def render(view: View) -> torch.Tensor:
        if view[0] not in ("rot", "zoom"):
            dy, dx = view
            return padded[..., pad + dy:pad + dy + side, pad + dx:pad + dx + side]
        # Output pixel p samples the input at R(-a) p / zoom: the face turned by a degrees, magnified by zoom.
        a, zoom = (math.radians(view[1]), 1.0) if view[0] == "rot" else (0.0, view[1])
        theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]) / zoom
        grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    logits = {}
    with torch.inference_mode():
        for view in tqdm(views, desc="views", unit="view"):
            image = render(view).contiguous(memory_format=torch.channels_last)
            for flip in (False, True):
                v = image.flip(-1) if flip else image
                logits[flip, view] = torch.cat([model(v[sl]).float() for sl in iter_batches(len(v), 512)])
    rows = []
    for name, chosen in sets.items():
        pred = torch.stack([logits[f, v] for f in (False, True) for v in chosen]).mean(0).argmax(1).numpy()
        rows.append({"set": name, "views": 2 * len(chosen), "accuracy": float((pred == y).mean()),
                     "macro_f1": float(f1_score(y, pred, average="macro"))})
    if args.json:
        print(json.dumps({"model": args.model, "split": args.split, "rows": rows}, indent=2))
        return
    print(f"| {args.sets} ({args.model}, {args.split}, {len(y)} faces) | views | accuracy | macro F1 |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['set']} | {r['views']} | {100 * r['accuracy']:.2f}% | {r['macro_f1']:.3f} |")


if __name__ == "__main__":
    main()
