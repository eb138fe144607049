"""Rerun every table that depends on the shipped `default` (its weights, its TTA, the detector's settings), one
step after another, each step's output kept in one folder: what BENCHMARKS.md and MODEL_CARD.md are updated
from, in the same commit as the change that moved them.

    python benchmarks/rerun_tables.py --list                      # the steps and their commands; nothing runs
    python benchmarks/rerun_tables.py --out ~/.cache/ferkit/tables --fer-python /tmp/fervenv/bin/python
    python benchmarks/rerun_tables.py --out DIR --only predict,classify --fer-python /tmp/fervenv/bin/python

Each step writes OUT/NAME.out (its standard output: JSON where the command has it) and OUT/NAME.log (its
standard error: progress and per-row lines). Steps run one at a time, since each wants both cores; a step that
fails is reported and the others still run, and the exit status is 1 if any failed. The model card's metrics
folder (docs/model_card/default) is rewritten by the `card` step. The steps that compare against the `fer`
package need `--fer-python` (set up as BENCHMARKS.md says); without it they are skipped with a note. About
45 minutes for all of them on the 2-core dev machine.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@dataclass(frozen=True)
class Step:
    name: str
    table: str  # where its numbers go
    argv: tuple[str, ...]
    needs_fer: bool = False


def steps(shared: Path, fer_python: str | None) -> list[Step]:
    data = str(shared / "data" / "fer2013.zip")
    yunet = str(shared / "models" / "face_detection_yunet_2023mar.onnx")
    photos = str(shared / "media" / "photos")
    py = sys.executable
    bench = str(ROOT / "benchmarks")
    fer = ("--fer-python", fer_python or "FER_PYTHON")
    evaluate = (py, "-m", "ferkit", "evaluate", "--data", data, "--split", "publictest", "--model", "default", "--json")
    return [
        Step("card", "MODEL_CARD.md metrics, BENCHMARKS.md accuracy",
             (*evaluate, "--out", str(ROOT / "docs" / "model_card" / "default"))),
        Step("card-flip_shift", "MODEL_CARD.md, BENCHMARKS.md accuracy notes", (*evaluate, "--tta", "flip_shift")),
        Step("card-flip", "MODEL_CARD.md, BENCHMARKS.md video TTA table", (*evaluate, "--tta", "flip")),
        Step("card-none", "MODEL_CARD.md, BENCHMARKS.md video TTA table", (*evaluate, "--tta", "none")),
        Step("card-leaks", "MODEL_CARD.md, BENCHMARKS.md accuracy notes", (*evaluate, "--exclude-leaks")),
        Step("card-onnx", "MODEL_CARD.md INT8 twin", (*evaluate, "--backend", "onnx")),
        Step("predict", "BENCHMARKS.md end to end against fer",
             (py, f"{bench}/bench_predict.py", "--threads", "1,2", "--rounds", "3", "--tta", "adaptive,flip_shift,flip,none",
              "--float", "--opencv-detector", "--detector-model", yunet, "--photos", photos, *fer, "--repeats", "20"),
             needs_fer=True),
        Step("classify", "BENCHMARKS.md classifier speed",
             (py, f"{bench}/bench_classify.py", "--models", "default,fast", "--threads", "1,2", "--repeats", "20",
              "--data", data, "--json")),
        Step("classify-flip_shift", "BENCHMARKS.md classifier speed",
             (py, f"{bench}/bench_classify.py", "--models", "default", "--tta", "flip_shift", "--threads", "1,2",
              "--repeats", "20", "--data", data, "--json")),
        Step("video-fps", "BENCHMARKS.md video frames per second",
             (py, f"{bench}/bench_video.py", "fps", *fer, "--repeats", "3"), needs_fer=True),
        Step("video-scaling", "BENCHMARKS.md video scaling", (py, f"{bench}/bench_video.py", "scaling", "--repeats", "3")),
        Step("video-flicker", "BENCHMARKS.md video flicker",
             (py, f"{bench}/bench_video.py", "flicker", *fer), needs_fer=True),
        Step("serve", "BENCHMARKS.md web server under load",
             (py, f"{bench}/bench_serve.py", "--photos", photos, "--detector-model", yunet, "--clients", "32",
              "--seconds", "60", "--warmup", "10", "--batch-seconds", "12")),
        Step("explain", "BENCHMARKS.md explanation speed",
             (py, f"{bench}/bench_explain.py", "--arch", "--model", "default", "--repeats", "10")),
    ]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, help="folder for each step's output (made if missing)")
    p.add_argument("--only", help="comma-separated step names (default: all)")
    p.add_argument("--fer-python", help="python of a virtualenv with `fer` installed (BENCHMARKS.md)")
    p.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    p.add_argument("--list", action="store_true", help="print the steps and their commands, run nothing")
    args = p.parse_args()
    plan = steps(args.shared, args.fer_python)
    if args.only:
        wanted = args.only.split(",")
        unknown = [w for w in wanted if w not in {s.name for s in plan}]
        if unknown:
            p.error(f"unknown step(s) {', '.join(unknown)}; the steps: {', '.join(s.name for s in plan)}")
        plan = [s for s in plan if s.name in wanted]
    if args.list:
        for s in plan:
            print(f"{s.name}  ({s.table})\n    {shlex.join(s.argv)}")
        return 0
    if args.out is None:
        p.error("give --out DIR (or --list)")
    args.out.mkdir(parents=True, exist_ok=True)
    failed, skipped, start = [], [], time.perf_counter()
    for i, s in enumerate(plan, 1):
        if s.needs_fer and not args.fer_python:
            print(f"[{i}/{len(plan)}] {s.name}: skipped (needs --fer-python)", file=sys.stderr)
            skipped.append(s.name)
            continue
        print(f"[{i}/{len(plan)}] {s.name}: {s.table}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        with open(args.out / f"{s.name}.out", "w") as out, open(args.out / f"{s.name}.log", "w") as log:
            rc = subprocess.run(s.argv, stdout=out, stderr=log, cwd=ROOT / "benchmarks").returncode
        print(f"    {'done' if rc == 0 else f'FAILED (exit {rc}; see {s.name}.log)'} in "
              f"{(time.perf_counter() - t) / 60:.1f} min", file=sys.stderr, flush=True)
        if rc:
            failed.append(s.name)
    print(f"{len(plan) - len(failed) - len(skipped)} of {len(plan)} steps done in "
          f"{(time.perf_counter() - start) / 60:.1f} min; outputs in {args.out}"
          + (f"; skipped: {', '.join(skipped)}" if skipped else "") + (f"; failed: {', '.join(failed)}" if failed else ""),
          file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
