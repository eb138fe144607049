"""Video pipeline benchmark: end-to-end frames/s (against the `fer` package in the same run), scaling with the
number of faces, flicker with and without smoothing, and memory over a long video.

    python benchmarks/bench_video.py fps --fer-python /tmp/fervenv/bin/python      # 2-3 min on 2 cores
    python benchmarks/bench_video.py scaling                                        # 35 s
    python benchmarks/bench_video.py flicker --fer-python /tmp/fervenv/bin/python  # 40 s
    python benchmarks/bench_video.py memory --frames 15000 --every 1000             # 3-4 min

Every ferkit number is end to end, as `ferkit video CLIP --out annotated.mp4 --csv timeline.csv` runs it with
its defaults (YuNet, the default model with the video path's TTA, smoothing): decoding, detection,
tracking, classification, the timeline CSV and the annotated video written, all included; the model is loaded
once before the clock starts. `fer` runs in its own virtualenv (it needs TensorFlow; see the `fer` setup in
BENCHMARKS.md): `Video.analyze` with its defaults (Haar, its TFLite model), frame saving and video writing off,
`cv2.waitKey` stubbed (it calls it even without a display, and headless OpenCV has no GUI), in a temporary
working directory (it writes data.csv there). This file re-runs itself there with `--worker fer`, so it imports
only the standard library at the top.

Runs are interleaved (ferkit, fer, ferkit, ...) so that both see the same load; the table gives the median and
the best of `--repeats` runs.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CLIPS = ("fer_woman2.mp4", "pyfeat_single_face.mp4")


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def recognizer(args, tta: str = "auto"):
    from ferkit.video import video_recognizer

    return video_recognizer(args.model, "yunet", detector_model=args.detector_model, tta=tta)


def ferkit_run(rec, clip: Path, tmp: Path, **options) -> dict:
    from ferkit.video import analyze

    start = time.perf_counter()
    timeline = analyze(clip, rec, out=tmp / "annotated.mp4", csv=tmp / "timeline.csv", **options)
    elapsed = time.perf_counter() - start
    return {"frames": timeline.frames, "fps": timeline.frames / elapsed, "rows": len(timeline),
            "tracks": len(timeline.tracks)}


def fer_run(args, clip: Path) -> dict:
    out = subprocess.run([args.fer_python, __file__, "worker-fer", "--clip", str(clip)], check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarize(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({max(values):.1f})"


# ---------------------------------------------------------------------------------------------------------------
# Sections


DEFAULTS = "ferkit (defaults)"


def section_fps(args) -> dict:
    rec = recognizer(args)
    # (recognizer, options, clips): the TTA alternatives only on the short clip, to keep the run short.
    setups = {
        DEFAULTS: (rec, {}, CLIPS),
        "ferkit --detect-every 3": (rec, {"detect_every": 3}, CLIPS),
    }
    for tta in ("none", "flip", "flip_shift"):
        if tta != rec.classifier.tta:
            setups[f"ferkit --tta {tta}"] = (recognizer(args, tta), {}, CLIPS[1:])
    results: dict[str, dict[str, list[dict]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CLIPS:
            clip = args.media / name
            ferkit_run(rec, clip, Path(tmp), max_frames=30)  # warm-up: first-call allocations, file cache
            for _ in range(args.repeats):
                for label, (r, options, clips) in setups.items():
                    if name in clips:
                        results.setdefault(name, {}).setdefault(label, []).append(
                            ferkit_run(r, clip, Path(tmp), **options))
                if args.fer_python:
                    results[name].setdefault("fer Video.analyze", []).append(fer_run(args, clip))
                print(json.dumps({name: {k: v[-1] for k, v in results[name].items()}}), file=sys.stderr)
    print(f"\nclassifier: {rec.classifier.description}; detector: {rec.detector_description}; "
          f"median (best) of {args.repeats} runs\n")
    print("| clip | pipeline | frames/s | face rows / frames |")
    print("|---|---|---|---|")
    for name, by_setup in results.items():
        for label, runs in by_setup.items():
            print(f"| {name} | {label} | {summarize([r['fps'] for r in runs])} | "
                  f"{runs[0]['rows']} / {runs[0]['frames']} |")
        fer = by_setup.get("fer Video.analyze")
        if fer:
            ours = by_setup[DEFAULTS]
            ratio = [o["fps"] / f["fps"] for o, f in zip(ours, fer)]
            print(f"| {name} | ferkit defaults / fer, same repeat | {statistics.median(ratio):.2f}x "
                  f"(min {min(ratio):.2f}x) | |")
    return {"classifier": rec.classifier.description, "results": results}


def composite_clips(media: Path, out: Path) -> dict[int, Path]:
    """640 x 360 clips with 1, 2 and 5 faces: the single-face clip as it is, two half-size copies side by side,
    five third-size copies in a 3 x 2 grid (each copy a few frames apart and every other one mirrored)."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(media / "pyfeat_single_face.mp4"))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    paths = {}
    layouts = {1: [(0, 0, 640, 360)], 2: [(0, 90, 320, 180), (320, 90, 320, 180)],
               5: [(c * 213, r * 180 + 30, 213, 120) for r in range(2) for c in range(3)][:5]}
    for n, cells in layouts.items():
        path = out / f"faces{n}.mp4"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (640, 360))
        for i in range(len(frames)):
            canvas = np.full((360, 640, 3), 40, np.uint8)
            for k, (x, y, w, h) in enumerate(cells):
                tile = cv2.resize(frames[(i + 7 * k) % len(frames)], (w, h), interpolation=cv2.INTER_AREA)
                canvas[y:y + h, x:x + w] = tile[:, ::-1] if k % 2 else tile
            writer.write(canvas)
        writer.release()
        paths[n] = path
    return paths


def section_scaling(args) -> dict:
    rec = recognizer(args)
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        clips = composite_clips(args.media, Path(tmp))
        ferkit_run(rec, clips[1], Path(tmp), max_frames=30)
        for _ in range(args.repeats):
            for n, clip in clips.items():
                for every in (1, 3):
                    results.setdefault(f"{n}|{every}", []).append(ferkit_run(rec, clip, Path(tmp),
                                                                             detect_every=every))
    print(f"\n640x360 composites of pyfeat_single_face.mp4 (72 frames); median (best) of {args.repeats} runs\n")
    print("| faces per frame | --detect-every | frames/s | face rows / frames | tracks |")
    print("|---|---|---|---|---|")
    for key, runs in results.items():
        n, every = key.split("|")
        print(f"| {n} | {every} | {summarize([r['fps'] for r in runs])} | {runs[0]['rows']} / {runs[0]['frames']} "
              f"| {runs[0]['tracks']} |")
    return results


def flicker(timeline, alpha: float | None) -> tuple[float, float]:
    """(label changes per track per second, share of rows whose label differs from the raw label) with the raw
    probabilities re-smoothed at ``alpha`` (None: the raw labels)."""
    import numpy as np

    from ferkit.video.smoothing import EMASmoother

    d = timeline.data()
    changes, seconds, differ, rows = 0, 0.0, 0, 0
    for tid in timeline.tracks:
        sel = d["track_id"] == tid
        frames, probs = d["frame"][sel], d["probs"][sel].astype(np.float64)
        ok = ~np.isnan(probs).any(1)
        frames, probs = frames[ok], probs[ok]
        if len(frames) < 2:
            continue
        raw = probs.argmax(1)
        if alpha is None:
            labels = raw
        else:
            s = EMASmoother(alpha)
            labels = np.array([s.update(tid, p, int(f)).argmax() for f, p in zip(frames, probs)])
        changes += int((labels[1:] != labels[:-1]).sum())
        seconds += (frames[-1] - frames[0] + 1) / timeline.fps
        differ += int((labels != raw).sum())
        rows += len(labels)
    return changes / seconds, differ / rows


def section_flicker(args) -> dict:
    from ferkit.video import analyze

    rec = recognizer(args)
    out: dict[str, dict] = {}
    alphas = (None, 0.5, 0.3, 0.2, 0.1)
    for name in CLIPS:
        timeline = analyze(args.media / name, rec, smooth=None)
        out[name] = {str(a): flicker(timeline, a) for a in alphas}
        if args.fer_python:
            fer = fer_run(args, args.media / name)
            out[name]["fer"] = (fer["label_changes_per_s"], float("nan"))
    print("\nlabel changes per track per second (share of frames whose label the smoothing changed)\n")
    print("| clip | raw | " + " | ".join(f"EMA {a}" for a in alphas[1:]) + (" | fer (raw) |" if args.fer_python
                                                                              else " |"))
    print("|---|" + "---|" * (len(alphas) + bool(args.fer_python)))
    for name, by_alpha in out.items():
        cells = [f"{by_alpha['None'][0]:.2f}"] + [f"{by_alpha[str(a)][0]:.2f} ({by_alpha[str(a)][1]:.0%})"
                                                   for a in alphas[1:]]
        if "fer" in by_alpha:
            cells.append(f"{by_alpha['fer'][0]:.2f}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    return out


def long_clip(media: Path, path: Path, frames: int) -> Path:
    """``frames`` frames of fer_woman2.mp4 played forwards and backwards (continuous motion for the tracker)."""
    import cv2

    cap = cv2.VideoCapture(str(media / "fer_woman2.mp4"))
    source = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        source.append(f)
    loop = source + source[-2:0:-1]
    h, w = source[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, (w, h))
    for i in range(frames):
        writer.write(loop[i % len(loop)])
    writer.release()
    return path


def section_memory(args) -> dict:
    from ferkit.video import analyze

    rec = recognizer(args)
    samples: list[tuple[int, float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = long_clip(args.media, Path(tmp) / "long.mp4", args.frames)
        start = time.perf_counter()
        samples.append((0, 0.0, rss_mb()))

        def sample(frame) -> None:
            if (frame.index + 1) % args.every == 0:
                samples.append((frame.index + 1, time.perf_counter() - start, rss_mb()))
                print(json.dumps(samples[-1]), file=sys.stderr)

        timeline = analyze(clip, rec, out=Path(tmp) / "annotated.mp4", csv=Path(tmp) / "timeline.csv",
                           on_frame=sample)
        elapsed = time.perf_counter() - start
    print(f"\n{args.frames} frames ({args.frames / 30 / 60:.1f} min of 596x336 video at 30 fps) in {elapsed:.0f} s "
          f"({args.frames / elapsed:.1f} frames/s), {len(timeline)} face rows, annotated video and CSV written\n")
    print("| frames processed | seconds | RSS (MB) |")
    print("|---|---|---|")
    for n, t, mb in samples:
        print(f"| {n} | {t:.0f} | {mb:.1f} |")
    after_warmup = [mb for n, _, mb in samples if n >= 2 * args.every]
    if len(after_warmup) >= 2:
        print(f"\nRSS from frame {2 * args.every} on: {min(after_warmup):.1f}-{max(after_warmup):.1f} MB "
              f"(growth {after_warmup[-1] - after_warmup[0]:+.1f} MB over {samples[-1][0] - 2 * args.every} frames; "
              f"the timeline itself keeps about {timeline_bytes_per_row(timeline):.0f} bytes per face row)")
    return {"samples": samples, "elapsed_s": elapsed}


def timeline_bytes_per_row(timeline) -> float:
    chunk = timeline._chunks[0] if timeline._chunks else {}
    per_chunk = sum(a.nbytes for a in chunk.values())
    from ferkit.video.timeline import _CHUNK

    return per_chunk / _CHUNK


# ---------------------------------------------------------------------------------------------------------------
# fer (runs in fer's own virtualenv)


def fer_worker(clip: Path) -> None:
    clip = clip.resolve()
    import logging

    import cv2

    logging.disable(logging.WARNING)
    # fer calls these even without a display (waitKey on every frame); headless OpenCV has no GUI.
    cv2.waitKey = lambda delay=0: -1
    cv2.destroyAllWindows = lambda: None
    from fer.classes import Video
    from fer.fer import FER

    detector = FER()  # its defaults: Haar cascade, its TFLite model
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # it writes data.csv into the working directory
        video = Video(str(clip), outdir=tmp)
        start = time.perf_counter()
        raw = video.analyze(detector, display=False, save_frames=False, save_video=False, annotate_frames=False,
                            zip_images=False, output="pandas")
        elapsed = time.perf_counter() - start
    frames = int(cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FRAME_COUNT))
    # Its rows: one per frame with a face, the first face's scores in columns named by emotion.
    emotions = [c for c in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral") if c in raw.columns]
    labels = raw[emotions].to_numpy().argmax(1) if len(raw) else []
    changes = sum(int(a != b) for a, b in zip(labels[1:], labels[:-1]))
    fps = cv2.VideoCapture(str(clip)).get(cv2.CAP_PROP_FPS)
    print(json.dumps({"frames": frames, "fps": frames / elapsed, "rows": len(raw), "tracks": 1,
                      "label_changes_per_s": changes / max(len(labels) / fps, 1e-9)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("section", choices=("fps", "scaling", "flicker", "memory", "worker-fer"))
    p.add_argument("--media", type=Path, default=SHARED / "media" / "video")
    p.add_argument("--detector-model", default=str(SHARED / "models" / "face_detection_yunet_2023mar.onnx"))
    p.add_argument("--model", default="default")
    p.add_argument("--fer-python", help="python of a virtualenv with `fer` installed")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--frames", type=int, default=9000, help="memory: length of the generated video")
    p.add_argument("--every", type=int, default=500, help="memory: frames between RSS samples")
    p.add_argument("--clip", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--json-out", type=Path)
    args = p.parse_args()
    if args.section == "worker-fer":
        return fer_worker(args.clip)
    result = {"fps": section_fps, "scaling": section_scaling, "flicker": section_flicker,
              "memory": section_memory}[args.section](args)
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
