"""Training throughput: ferkit's trainer per model in fp32 and bf16, and against a plain PyTorch loop.

    python benchmarks/bench_train.py --data ../shared/data/fer2013.zip [--models fernet,fernet_s,baseline_cnn]
        [--precisions fp32,bf16] [--compare fernet,baseline_cnn] [--steps 30] [--input-size 40]

Part 1 times `ferkit.training.loop.run` for a fixed number of steps per model and precision (images/s and the share
of step time spent outside forward/backward). Part 2 compares, on the same model, ferkit's in-memory batched
pipeline with the loop people usually write: a torch DataLoader over JPEG files decoded by PIL with
torchvision-style per-image transforms each epoch (written here with PIL + numpy since torchvision is not
used). Both parts run side by side in one process, so the ratios are what to quote.
"""
from __future__ import annotations

import argparse
import io
import json
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from ferkit.transforms.augment import AugmentConfig
from ferkit.data import load_dataset
from ferkit.labels import EMOTIONS
from ferkit.models import create_model
from ferkit.training.loop import TrainConfig, run


def ferkit_throughput(ds, model: str, precision: str, steps: int, input_size: int, batch_size: int) -> dict:
    cfg = TrainConfig(model=model, input_size=input_size, epochs=1, batch_size=batch_size, limit_steps=steps,
                      precision=precision, progress=False, out=f"/tmp/ferkit-bench/{model}-{precision}",
                      augment=AugmentConfig(erase=0.4, shear=5), val_split="")
    run(cfg, ds.split("train"), None, ds.label_names)
    row = json.load(open(f"/tmp/ferkit-bench/{model}-{precision}/summary.json"))
    import csv

    metrics = list(csv.DictReader(open(f"/tmp/ferkit-bench/{model}-{precision}/metrics.csv")))[-1]
    return {"model": model, "input_size": input_size, "precision": precision,
            "images_per_s": float(metrics["images_per_s"]),
            "data_share": float(metrics["data_share"]), "seconds": row["train_seconds"]}


class ZipJpegDataset(torch.utils.data.Dataset):
    """The usual baseline: decode each JPEG with PIL every epoch and apply per-image random transforms."""

    def __init__(self, zip_path: str, input_size: int):
        self.zip_path = zip_path
        self.size = input_size
        with zipfile.ZipFile(zip_path) as zf:
            self.names = [n for n in zf.namelist() if n.startswith("train/") and n.endswith(".jpg")]
        self.zf = None

    def __len__(self):
        return len(self.names)

    def __getitem__(self, i):
        if self.zf is None:
            self.zf = zipfile.ZipFile(self.zip_path)
        name = self.names[i]
        img = Image.open(io.BytesIO(self.zf.read(name))).convert("L")
        if np.random.rand() < 0.5:
            img = ImageOps.mirror(img)
        img = img.rotate(np.random.uniform(-12, 12), resample=Image.BILINEAR)
        img = img.resize((self.size, self.size), Image.BILINEAR)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 127.5 - 1.0)[None]
        return x, EMOTIONS.index(name.split("/")[1])


def plain_loop_throughput(zip_path: str, model_name: str, steps: int, input_size: int, workers: int,
                          batch_size: int) -> dict:
    model = create_model(model_name, input_size=input_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loader = torch.utils.data.DataLoader(ZipJpegDataset(zip_path, input_size), batch_size=batch_size,
                                         shuffle=True, num_workers=workers, drop_last=True)
    seen, t_data, it = 0, 0.0, iter(loader)
    start = time.perf_counter()
    for _ in range(steps):
        t0 = time.perf_counter()
        x, y = next(it)
        t_data += time.perf_counter() - t0
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        seen += len(y)
    total = time.perf_counter() - start
    return {"model": model_name, "loop": f"DataLoader+PIL ({workers} workers)", "images_per_s": seen / total,
            "data_share": t_data / total}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fer2013.zip")
    ap.add_argument("--models", default="fernet,fernet_s,baseline_cnn")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--compare", default="",
                    help="models to also train with the plain DataLoader+PIL loop (default: the first of --models; "
                         "none: skip)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--input-size", type=int, default=40)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    ds = load_dataset(args.data)
    models = args.models.split(",")
    rows = []
    for model in models:
        for precision in args.precisions.split(","):
            rows.append(ferkit_throughput(ds, model, precision, args.steps, args.input_size, args.batch_size))
            print(json.dumps(rows[-1]), flush=True)
    print("\n| model | input | precision | images/s | share outside forward/backward |\n|---|---|---|---:|---:|")
    for r in rows:
        print(f"| `{r['model']}` | {r['input_size']} | {r['precision']} | {r['images_per_s']:,.1f} "
              f"| {100 * r['data_share']:.1f}% |")
    compare = models[:1] if not args.compare else [] if args.compare == "none" else args.compare.split(",")
    for model in compare:
        plain = plain_loop_throughput(args.data, model, args.steps, args.input_size, args.workers, args.batch_size)
        print(json.dumps(plain), flush=True)
        ours = next((r for r in rows if r["model"] == model and r["precision"] == "fp32"), None)
        if ours is None:
            ours = ferkit_throughput(ds, model, "fp32", args.steps, args.input_size, args.batch_size)
        print(f"| `{model}` | ferkit {ours['images_per_s']:,.1f} img/s ({100 * ours['data_share']:.1f}% data) "
              f"| plain loop {plain['images_per_s']:,.1f} img/s ({100 * plain['data_share']:.1f}% data) "
              f"| {ours['images_per_s'] / plain['images_per_s']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
