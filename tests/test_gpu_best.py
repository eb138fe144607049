"""tools/gpu_best.py, the one command a lent GPU runs, end to end on the CPU with tiny runs: a bug found here
costs nothing, one found on the device costs its minutes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic import standard_items, write_zip

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_best_trains_evaluates_and_leaves_only_what_comes_back(tmp_path):
    torch = pytest.importorskip("torch")
    from ferkit.models.checkpoint import load_model

    data = write_zip(tmp_path / "fer.zip", standard_items(4))
    out, work = tmp_path / "out", tmp_path / "work"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "gpu_best.py"), "--data", str(data), "--out", str(out),
                           "--work", str(work), "--runs", "fernet_s:0,fernet_s:1", "--device", "cpu",
                           "--probe-steps", "2", "--max-epochs", "2", "--budget", "5",
                           "--extra", "--batch-size 4 --threads 1"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    # $OUT holds at most 8 files, none in folders: the results and one float16 checkpoint per run.
    assert sorted(p.name for p in out.iterdir()) == ["fernet_s-s0.pt", "fernet_s-s1.pt", "results.json"]
    results = json.loads((out / "results.json").read_text())
    assert set(results["runs"]) == {"fernet_s-s0", "fernet_s-s1"}
    for run in results["runs"].values():
        assert 1 <= run["epochs"] <= 2 and run["probe_images_per_s"] > 0
        assert "--teacher default --teacher-tta flip_shift --teacher-mode fixed --distill 0.5" in run["command"]
    names = [row["model"] for row in results["evaluated"]]
    assert names == ["fernet_s-s0", "fernet_s-s1", "ensemble of the runs", "ensemble of the runs + default",
                     "default (shipped)"]
    assert all(0 <= row[t] <= 1 for row in results["evaluated"] for t in ("none", "flip", "flip_shift"))

    # The halved checkpoint is the run's best.pt to float16 rounding, and half its size.
    halved, full = out / "fernet_s-s0.pt", work / "fernet_s-s0" / "best.pt"
    (a, _), (b, _) = load_model(halved), load_model(full)
    x = torch.randn(4, 1, 40, 40)
    assert torch.allclose(a(x), b(x), atol=5e-3)
    assert halved.stat().st_size < 0.6 * full.stat().st_size
