"""One command for a lent GPU: train the most accurate models its minutes allow, side by side, evaluate them and
their ensembles on PublicTest, and leave in --out what `tools/ship_model.py` needs to ship the winner as `best`.

On the device machine (the working tree travels with the data carried in an ignored folder; see
docs/experiments/toward-72.md for the carry):

    python tools/gpu_best.py --data .gpu/fer2013.zip --out $OUT --budget 420

1. Probe: every run trains ``--probe-steps`` steps, all side by side as they will train, and each one's
   images/s (from its metrics.csv) sizes its epochs to fill ``--budget`` seconds (at most ``--max-epochs``).
2. Train: the `default` recipe per run (``--runs ARCH:SEED,...``), all at once, each with ``default``'s stored
   ``flip_shift`` probabilities as a fixed teacher (``--distill``; 0 trains on the labels alone).
3. Evaluate each run's best.pt, and the ensemble of all runs with and without the shipped ``default``, under
   none / flip / flip_shift. --out gets only what comes back through $OUT (at most 8 files of 16 MiB):
   results.json (the table, the commands, the machine, each log's end) and each run's best.pt as float16. The
   run folders stay in --work.

``--device cpu --probe-steps 2 --max-epochs 1`` runs the whole path on a CPU in a minute (tests/test_scripts.py).
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

TTAS = ("none", "flip", "flip_shift")
TRAIN_FACES = 28_709  # FER2013's training split


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="FER2013 as Kaggle ships it")
    ap.add_argument("--out", required=True, type=Path, help="results.json and the float16 best.pt of each run")
    ap.add_argument("--work", type=Path, default=Path("/tmp/ferkit-gpu-best"), help="the run folders and logs")
    ap.add_argument("--runs", default="fernet_l:0,fernet_l:1,fernet_l:2,fernet:0", help="ARCH:SEED,...")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds of side-by-side training")
    ap.add_argument("--max-epochs", type=int, default=150)
    ap.add_argument("--probe-steps", type=int, default=150)
    ap.add_argument("--distill", type=float, default=0.5, help="the fixed teacher's share of each target")
    ap.add_argument("--teacher", default="default")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--extra", default="", help="more `ferkit train` arguments for every run, as one string")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    runs = [tuple(r.split(":")) for r in args.runs.split(",") if r]
    started = time.monotonic()
    log = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}

    probe = {f"{arch}-s{seed}": command(args, arch, seed, epochs=1, out=args.work / "probe" / f"{arch}-s{seed}",
                                        extra=["--limit-steps", str(args.probe_steps)])
             for arch, seed in runs}
    side_by_side(probe, args.work / "probe")
    for name in probe:
        speed = images_per_s(args.work / "probe" / name)
        epochs = max(1, min(args.max_epochs, int(args.budget * speed / TRAIN_FACES)))
        log["runs"][name] = {"probe_images_per_s": round(speed, 1), "epochs": epochs}
    print(json.dumps(log["runs"]), flush=True)

    train = {name: command(args, *name.rsplit("-s", 1), epochs=log["runs"][name]["epochs"], out=args.work / name)
             for name in probe}
    for name, cmd in train.items():
        log["runs"][name]["command"] = " ".join(cmd)
    side_by_side(train, args.work)
    log["train_s"] = round(time.monotonic() - started, 1)
    for name in train:
        log["runs"][name]["log_end"] = (args.work / f"{name}.log").read_text()[-1500:]
        log["runs"][name]["summary"] = json.loads((args.work / name / "summary.json").read_text())

    log["evaluated"] = evaluate(args, [args.work / name / "best.pt" for name in train])
    for name in train:
        halve(args.work / name / "best.pt", args.out / f"{name}.pt")
    log["total_s"] = round(time.monotonic() - started, 1)
    (args.out / "results.json").write_text(json.dumps(log, indent=2))
    print(json.dumps(log["evaluated"], indent=1))
    return 0


def command(args, arch: str, seed: str, *, epochs: int, out: Path, extra: list[str] = ()) -> list[str]:
    cmd = [sys.executable, "-m", "ferkit", "train", "--data", args.data, "--recipe", "default", "--model", arch,
           "--seed", str(seed), "--epochs", str(epochs), "--device", args.device, "--out", str(out), "--no-progress",
           *extra, *args.extra.split()]
    if args.distill > 0:
        cmd += ["--teacher", args.teacher, "--teacher-tta", "flip_shift", "--teacher-mode", "fixed",
                "--distill", str(args.distill)]
    return cmd


def side_by_side(commands: dict[str, list[str]], logs: Path) -> None:
    """Run every command at once; fail with the first one's log tail if any fails."""
    logs.mkdir(parents=True, exist_ok=True)
    procs = {}
    for name, cmd in commands.items():
        f = open(logs / f"{name}.log", "w")
        procs[name] = (subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT), f)
    failed = []
    for name, (proc, f) in procs.items():
        if proc.wait() != 0:
            failed.append(name)
        f.close()
    if failed:
        tail = (logs / f"{failed[0]}.log").read_text()[-2000:]
        raise SystemExit(f"runs {', '.join(failed)} failed; the end of {failed[0]}'s log:\n{tail}")


def images_per_s(run: Path) -> float:
    with open(run / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    return float(rows[-1]["images_per_s"])


def evaluate(args, checkpoints: list[Path]) -> list[dict]:
    """PublicTest accuracy and macro F1 of each run, of all runs together and of all runs with ``default``."""
    import torch

    from ferkit.data import load_dataset
    from ferkit.evaluation.evaluate import evaluate_model
    from ferkit.models.checkpoint import load_model
    from ferkit.models.ensemble import combine_checkpoints

    split = load_dataset(args.data).split("publictest")
    device = torch.device(args.device)
    candidates = {p.parent.name: p for p in checkpoints}
    if len(checkpoints) > 1:
        candidates["ensemble of the runs"] = combine_checkpoints(checkpoints, args.work / "ensemble.pt")
    candidates["ensemble of the runs + default"] = combine_checkpoints([*checkpoints, "default"],
                                                                       args.work / "ensemble-default.pt")
    candidates["default (shipped)"] = "default"
    rows = []
    for name, spec in candidates.items():
        model, config = load_model(spec, device=device)
        row = {"model": name}
        for tta in TTAS:
            metrics = evaluate_model(model, config, split, tta=tta, device=device).metrics
            row[tta] = round(metrics["accuracy"], 4)
            row[f"{tta}_macro_f1"] = round(metrics["macro_f1"], 4)
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def halve(src: Path, dst: Path) -> None:
    """The checkpoint with float16 weights (half the file; `load_model` casts them back), written as
    `tools/ship_model.py --half` writes one."""
    from ferkit.models.checkpoint import ModelConfig, build_model, load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(src)
    config = ModelConfig.from_dict(ckpt["config"])
    model = build_model(config)
    model.load_state_dict(ckpt["state_dict"])
    save_checkpoint(dst, model.half(), config, meta=ckpt.get("meta"))


def machine() -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


if __name__ == "__main__":
    sys.exit(main())
