"""`ferkit video`: faces tracked through a video, a folder of frames, a camera or a stream, with their expressions.

    ferkit video talk.mp4 --out annotated.mp4 --csv faces.csv --summary tracks.csv --plot timeline.png
    ferkit video --camera 0 --json session.json          # Ctrl-C (or q in the window) ends it; outputs are kept

The work is ``ferkit.video.analyze``; this module parses, shows progress and prints where the outputs went.
"""
from __future__ import annotations

import argparse

from ferkit.cli.options import DefaultsHelpFormatter
from ferkit.transforms.views import TTA_MODES


def register(sub) -> None:
    p = sub.add_parser(
        "video", help="track faces through a video or camera and classify their expressions over time",
        description="Detect and track every face of a video file, folder of frames, camera or stream URL, classify "
                    "its expression in each frame (smoothed over time), and write an annotated video, a timeline "
                    "(one row per face per frame), a per-track summary and a timeline plot.",
        formatter_class=DefaultsHelpFormatter,
    )
    p.add_argument("source", nargs="?", metavar="SOURCE",
                   help="a video file, a folder of frames or a stream URL (rtsp://, http://, ...)")
    p.add_argument("--camera", type=int, metavar="N", help="read camera N instead of SOURCE (live)")
    p.add_argument("--out", metavar="FILE", help="write the annotated video (.mp4, .avi or .mkv)")
    table = p.add_mutually_exclusive_group()
    table.add_argument("--csv", metavar="FILE", help="write the timeline, one row per face per frame, as it goes")
    table.add_argument("--json", metavar="FILE", help="write the timeline as JSON")
    table.add_argument("--parquet", metavar="FILE", help="write the timeline as Parquet (needs pyarrow)")
    p.add_argument("--summary", metavar="FILE", help="write one row per track (.csv or .json)")
    p.add_argument("--plot", metavar="FILE", help="write the timeline plot (.png; needs matplotlib)")
    p.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="run the detector on every Nth frame; the tracker carries the boxes in between")
    p.add_argument("--max-faces", type=int, metavar="K", help="keep only the K largest faces of each frame")
    smooth = p.add_mutually_exclusive_group()
    smooth.add_argument("--smooth", type=float, default=0.2, metavar="A",
                        help="weight of the newest frame (per 1/30 s) in each track's moving average of "
                             "probabilities; lower: steadier labels, slower to follow a change (1: none)")
    smooth.add_argument("--no-smooth", action="store_true", help="no smoothing: the smoothed columns equal the raw")
    p.add_argument("--track-gap", type=float, default=1.0, metavar="SECONDS",
                   help="a face unseen for less than this keeps its track id")
    p.add_argument("--model", default="default", help="shipped model name, checkpoint .pt or exported .onnx")
    p.add_argument("--tta", choices=("auto", *TTA_MODES), default="auto",
                   help="test-time augmentation; auto = flip where the model can run it, else the model's own "
                        "(flip: 0.9 point below the photo default, adaptive, on FER2013, and never slower; "
                        "smoothing over frames does what its shifted views do)")
    p.add_argument("--detector", default="auto", choices=("auto", "yunet", "haar", "none"),
                   help="face detector; auto = YuNet (fetched once into the cache), else Haar; none = every "
                        "frame is one face (videos of face crops)")
    p.add_argument("--detector-model", metavar="FILE", help="the YuNet ONNX file (face_detection_yunet_2023mar.onnx)")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"), help="inference backend")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto")
    p.add_argument("--min-face", type=int, default=20, metavar="PX",
                   help="faces smaller than this are tracked but not classified")
    p.add_argument("--max-side", type=int, default=480, metavar="PX",
                   help="detect on frames downscaled to this longer side (lower: faster; 0: full size)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="ONNX Runtime threads per forward pass (the pipeline's own threads use the other cores; "
                        "more can pay with many faces per frame); 0: ONNX Runtime's choice")
    p.add_argument("--batch-frames", type=int, default=8, metavar="N",
                   help="frames whose faces are classified in one forward pass")
    p.add_argument("--fps", type=float, metavar="F", help="frame rate of a folder of frames (default 30), or an "
                                                          "override for a file that reports a wrong one")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--max-frame-side", type=int, default=4096, metavar="PX",
                   help="refuse frames larger than this on their longer side")
    show = p.add_mutually_exclusive_group()
    show.add_argument("--show", dest="show", action="store_true", default=None,
                      help="show the overlay in a window (default: for cameras and streams, where there is a display)")
    show.add_argument("--no-show", dest="show", action="store_false", help="never open a window")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from tqdm import tqdm

    from ferkit.errors import FerkitError
    from ferkit.video.pipeline import analyze, video_recognizer
    from ferkit.video.sources import open_source
    from ferkit.video.timeline import check_outputs
    from ferkit.video.writers import check_video_path

    if (args.source is None) == (args.camera is None):
        raise FerkitError("give a SOURCE (video file, folder of frames or stream URL) or --camera N, not both")
    if args.detect_every < 1 or args.batch_frames < 1 or (args.max_faces is not None and args.max_faces < 1):
        raise FerkitError(f"--detect-every, --batch-frames and --max-faces must be at least 1; got "
                          f"{args.detect_every}, {args.batch_frames}, {args.max_faces}")
    if not args.no_smooth and not 0 < args.smooth <= 1:
        raise FerkitError(f"--smooth is the weight of the newest frame, in (0, 1] (1: none); got {args.smooth}")
    if (args.max_frames is not None and args.max_frames < 1) or args.threads < 0:
        raise FerkitError(f"--max-frames must be at least 1 and --threads 0 or more; got {args.max_frames}, "
                          f"{args.threads}")
    # Outputs and the source are checked before the model loads: a bad one is reported at once.
    check_outputs(csv=args.csv, json=args.json, parquet=args.parquet, summary=args.summary, plot=args.plot)
    if args.out:
        check_video_path(args.out)
    source = open_source(args.camera if args.camera is not None else args.source, fps=args.fps,
                         max_frame_side=args.max_frame_side)
    try:
        rec = video_recognizer(args.model, args.detector, tta=args.tta,
                               backend=args.backend, device=args.device, detector_model=args.detector_model,
                               min_face=args.min_face, max_side=args.max_side, threads=args.threads or None)
    except BaseException:
        source.close()
        raise
    print(f"ferkit video: {source.name}: detector {rec.detector_description}; classifier "
          f"{rec.classifier.description}", file=sys.stderr)
    total = source.frame_count
    if total is not None and args.max_frames:
        total = min(total, args.max_frames)
    bar = tqdm(total=total, desc="video", unit="frame", file=sys.stderr, disable=None, dynamic_ncols=True)
    tracks: set[int] = set()

    def progress(frame) -> None:
        tracks.update(f.track_id for f in frame.faces)
        bar.update(1)
        if frame.index % 15 == 0:
            bar.set_postfix(tracks=len(tracks), dropped=frame.dropped, refresh=False)

    try:
        timeline = analyze(source, rec, out=args.out, csv=args.csv, json=args.json, parquet=args.parquet,
                           summary=args.summary, plot=args.plot,
                           show=source.live if args.show is None else args.show, on_frame=progress,
                           detect_every=args.detect_every, max_faces=args.max_faces,
                           smooth=None if args.no_smooth else args.smooth, track_gap_s=args.track_gap,
                           batch_frames=args.batch_frames, max_frames=args.max_frames)
    finally:
        bar.close()
    for s in timeline.summary():
        if s.dominant is None:
            text = "too small to classify"
        else:
            text = f"mostly {s.dominant} ({s.share[s.dominant]:.0%}), " + ", ".join(
                f"{k} {v:.0%}" for k, v in sorted(s.share.items(), key=lambda kv: -kv[1])[1:3] if v > 0)
        print(f"track {s.track_id}: {s.first_s:.2f}-{s.last_s:.2f} s ({s.frames} frames): {text.rstrip(', ')}")
    rate = timeline.frames / timeline.elapsed_s if timeline.elapsed_s > 0 else 0.0
    where = [f"{what} in {path}" for what, path in
             (("annotated video", args.out), ("timeline", args.csv or args.json or args.parquet),
              ("summary", args.summary), ("plot", args.plot)) if path]
    stopped = {"interrupt": "; stopped by Ctrl-C, outputs cover the frames so far",
               "window": "; stopped from the window"}.get(timeline.stopped_by or "", "")
    print(f"ferkit video: {timeline.frames} frames in {timeline.elapsed_s:.1f} s ({rate:.1f} frames/s), "
          f"{timeline.dropped} dropped; {_count(len(timeline.tracks), 'track')}, {_count(len(timeline), 'face row')}"
          + (f"; {', '.join(where)}" if where else "") + stopped, file=sys.stderr)
    # Ctrl-C is how a live session ends; a file cut short did not finish.
    return 130 if timeline.interrupted and not source.live else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
