"""Early-training ablation on FER2013: FERNet with and without zero-initialised residual batch norm.

    OMP_NUM_THREADS=2 python benchmarks/ablate_zero_init.py --data ../shared/data/fer2013.zip

Trains a small FERNet (widths 16-128, one block per stage, 40 px) for 400 steps of batch 64 on a fixed
12,800-image subset of the training split, with Adam (1e-3) and SGD (Nesterov, 0.05), and prints the running
training accuracy every 50 steps and the eval-mode accuracy on 1,000 of the training images at the end.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.data import load_dataset
from ferkit.models import create_model
from ferkit.models.fernet import BasicBlock


def run(X, Y, zero_init: bool, optimizer: str, steps: int = 400) -> tuple[list[float], float]:
    torch.manual_seed(0)
    model = create_model("fernet", widths=(16, 32, 64, 128), blocks=(1, 1, 1, 1))
    if zero_init:
        for m in model.modules():
            if isinstance(m, BasicBlock):
                torch.nn.init.zeros_(m.bn2.weight)
    opt = (torch.optim.Adam(model.parameters(), 1e-3) if optimizer == "adam" else
           torch.optim.SGD(model.parameters(), 0.05, momentum=0.9, nesterov=True, weight_decay=5e-4))
    accs = []
    for s in range(steps):
        b = slice((s * 64) % len(X), (s * 64) % len(X) + 64)
        out = model(X[b])
        loss = F.cross_entropy(out, Y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()
        accs.append((out.argmax(1) == Y[b]).float().mean().item())
    model.eval()
    with torch.no_grad():
        final = (model(X[:1000]).argmax(1) == Y[:1000]).float().mean().item()
    return [float(np.mean(accs[i:i + 50])) for i in range(0, steps, 50)], final


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="../shared/data/fer2013.zip")
    args = ap.parse_args()
    ds = load_dataset(args.data).split("train")
    idx = np.random.default_rng(0).permutation(len(ds))[:12800]
    X = torch.as_tensor(ds.images[idx]).float()[:, None] / 127.5 - 1
    X = F.interpolate(X, size=(40, 40), mode="bilinear", antialias=True)
    Y = torch.as_tensor(ds.labels[idx])
    for optimizer in ("adam", "sgd"):
        for zero_init in (True, False):
            curve, final = run(X, Y, zero_init, optimizer)
            print(f"{optimizer:4s} zero_init={zero_init!s:5s} train acc per 50 steps "
                  f"{' '.join(f'{a:.3f}' for a in curve)}  eval acc {final:.3f}", flush=True)


if __name__ == "__main__":
    main()
