"""The trainer's numbers are pinned: short seeded fp32 runs on synthetic data reproduce the metrics.csv recorded
in tests/data/, so a change to the loop that alters what it computes (the order random numbers are drawn in, the
step the rate is set at, when the average updates) fails here instead of passing as a refactor.

The fixtures were written by the trainer as it stood before the loop was split into small modules:
``python tests/test_training_golden.py --write`` rewrites them, which only a deliberate change of results should do.
"""
import csv
import math
import sys
from pathlib import Path

import pytest

from ferkit.transforms.augment import AugmentConfig
from synthetic import learnable_dataset, tiny_config as tiny

DATA = Path(__file__).parent / "data"
TIMING = {"epoch_s", "images_per_s", "data_share", "teacher_share", "swa_bn_s"}  # wall-clock: differs every run

# Augmentation, CutMix, label smoothing and flip TTA are on so that every random draw of a step is pinned.
COMMON = dict(epochs=3, limit_steps=4, schedule="onecycle", lr=0.05, precision="fp32", device="cpu", tta="flip",
              augment=AugmentConfig(hflip=0.5, rotate=10, shift=0.08, erase=0.3), cutmix=1.0, mix_prob=0.5,
              label_smoothing=0.1, seed=3)
RUNS = {
    "golden_train_metrics.csv": {},
    "golden_train_metrics_ema.csv": dict(ema=0.9),
    "golden_train_metrics_swa.csv": dict(swa=2),
}


def run_metrics(out: Path, **kw) -> list[dict[str, str]]:
    from ferkit.training.loop import train

    train(tiny(out, **{**COMMON, **kw}), learnable_dataset(n_train=224, n_val=70, size=24))
    rows = list(csv.DictReader(open(out / "run" / "metrics.csv")))
    return [{k: v for k, v in row.items() if k not in TIMING} for row in rows]


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_seeded_run_reproduces_the_recorded_metrics(tmp_path, name):
    expected = list(csv.DictReader(open(DATA / name)))
    got = run_metrics(tmp_path, **RUNS[name])
    assert [list(row) for row in got] == [list(row) for row in expected]  # same columns, same order
    for g, e in zip(got, expected):
        for column in e:
            if e[column] == "" or g[column] == "":  # --swa columns are empty before the average starts
                assert g[column] == e[column], (e["epoch"], column)
                continue
            assert math.isclose(float(g[column]), float(e[column]), rel_tol=1e-6, abs_tol=1e-12), \
                (e["epoch"], column, g[column], e[column])


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_training_golden.py --write  (rewrites the fixtures in tests/data/)")
    import tempfile

    import torch

    torch.set_num_threads(1)
    DATA.mkdir(exist_ok=True)
    for name, kw in RUNS.items():
        with tempfile.TemporaryDirectory() as tmp:
            rows = run_metrics(Path(tmp), **kw)
        with open(DATA / name, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(dict.fromkeys(k for row in rows for k in row)))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {DATA / name}: {len(rows)} epochs, {len(writer.fieldnames)} columns")
