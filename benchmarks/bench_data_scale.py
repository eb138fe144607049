"""Datasets at scale: how fast the cache is built from large photos, and how much memory the trainer needs when
its faces are memory-mapped from the cache instead of held in memory.

    python benchmarks/bench_data_scale.py cache --photos 2000            # AffectNet-like folder of large JPEGs
    python benchmarks/bench_data_scale.py train --faces 100000 --side 112  # 3.8 GB mapped cache, peak RSS

``cache`` writes an AffectNet-layout folder (training.csv / validation.csv and 1024 x 768 JPEGs with a face box
of about 400 px) into a temporary folder, then times ``load_dataset`` building its cache from nothing (decoding
on every core, face boxes cropped to 112 x 112 RGB), and a second read from the cache.

``train`` writes N faces of side x side RGB as a ``.npy`` file (what the cache stores beyond 1 GB), maps it
read-only as the cache does, and trains ``fernet`` on it for a fixed number of steps in a child process,
reporting that process's peak resident memory next to the file's size.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HEADER = ("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,"
          "arousal")


def write_affectnet_like(root: Path, n: int, seed: int = 0) -> Path:
    """n photos of 1024 x 768 with a bright 400 px face-like square, 80% in training.csv, the rest validation."""
    import cv2

    rng = np.random.default_rng(seed)
    lists = root / "Manually_Annotated_file_lists"
    lists.mkdir(parents=True, exist_ok=True)
    rows = {"training.csv": [HEADER], "validation.csv": [HEADER]}
    landmarks = ";".join(["300.0"] * 136)
    for i in range(n):
        photo = rng.integers(0, 255, (768 // 8, 1024 // 8, 3), dtype=np.uint8)
        photo = cv2.resize(photo, (1024, 768), interpolation=cv2.INTER_CUBIC)  # smooth texture, real JPEG sizes
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 350))
        photo[y:y + 400, x:x + 400] = np.clip(photo[y:y + 400, x:x + 400].astype(int) + 60, 0, 255)
        rel = f"{i % 50}/{i:06d}.jpg"
        path = root / "Manually_Annotated_Images" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 90])
        code = i % 8
        file = "validation.csv" if i % 5 == 0 else "training.csv"
        rows[file].append(f"{rel},{x},{y},400,400,\"{landmarks}\",{code},0.1,-0.1")
    for file, lines in rows.items():
        (lists / file).write_text("\n".join(lines) + "\n")
    return root


def bench_cache(args: argparse.Namespace) -> dict:
    import os

    from ferkit.data import load_dataset

    with tempfile.TemporaryDirectory() as tmp:
        root = write_affectnet_like(Path(tmp) / "affectnet", args.photos)
        size_mb = sum(p.stat().st_size for p in root.rglob("*.jpg")) / 1e6
        os.environ["FERKIT_CACHE_DIR"] = str(Path(tmp) / "cache")
        t0 = time.perf_counter()
        ds = load_dataset(root)
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        load_dataset(root)
        again = time.perf_counter() - t0
    return {"photos": args.photos, "jpeg_mb": round(size_mb, 1), "faces": len(ds),
            "face_shape": list(ds.images.shape[1:]), "cores": len(os.sched_getaffinity(0)),
            "build_s": round(build, 2), "images_per_s": round(args.photos / build, 1),
            "cached_read_s": round(again, 3)}


def bench_train(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "faces.npy"
        faces = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8,
                                          shape=(args.faces, args.side, args.side, 3))
        rng = np.random.default_rng(0)
        for start in range(0, args.faces, 4096):
            stop = min(start + 4096, args.faces)
            faces[start:stop] = rng.integers(0, 256, (stop - start, args.side, args.side, 3), dtype=np.uint8)
        faces.flush()
        del faces
        file_mb = path.stat().st_size / 1e6
        code = (
            "import json, resource, sys, numpy as np\n"
            "from ferkit.data.dataset import FaceDataset\n"
            "from ferkit.labels import EMOTIONS\n"
            "from ferkit.training import TrainConfig, train\n"
            f"images = np.load({str(path)!r}, mmap_mode='r')\n"
            "n = len(images)\n"
            "labels = (np.arange(n) % 7).astype(np.int64)\n"
            "splits = np.array(['train'] * (n - 2000) + ['val'] * 2000)\n"
            "ds = FaceDataset(images, labels, splits, np.array([str(i) for i in range(n)]), EMOTIONS, 'mapped')\n"
            f"cfg = TrainConfig(model='fernet', input_size=40, epochs=1, batch_size=64, limit_steps={args.steps},\n"
            f"                  out={str(Path(tmp) / 'run')!r}, progress=False, precision='auto')\n"
            "summary = train(cfg, ds)\n"
            # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec, and the
            # parent just wrote the mapped file.
            "peak = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM')) / 1024\n"
            "print(json.dumps({'peak_rss_mb': round(peak, 1), 'train_seconds': summary['train_seconds']}))\n"
        )
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
    return {"faces": args.faces, "side": args.side, "cache_file_mb": round(file_mb, 1), "steps": args.steps,
            "wall_s": round(time.perf_counter() - t0, 1), **result,
            "peak_rss_share_of_file": round(result["peak_rss_mb"] / file_mb, 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("what", choices=("cache", "train"))
    p.add_argument("--photos", type=int, default=2000, help="cache: photos to generate")
    p.add_argument("--faces", type=int, default=100_000, help="train: faces in the mapped cache")
    p.add_argument("--side", type=int, default=112, help="train: face side in pixels")
    p.add_argument("--steps", type=int, default=50, help="train: training steps of 64 faces")
    args = p.parse_args()
    result = bench_cache(args) if args.what == "cache" else bench_train(args)
    result["bench_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
