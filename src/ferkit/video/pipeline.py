"""The video pipeline: a reader thread, a detector thread, bounded queues, batched inference, a writer thread.

    reader thread (FrameReader)       decodes frames from the source into a bounded FrameQueue
    detector thread (DetectionThread) finds the faces of each frame (or of every Nth, ``detect_every``) while
                                      inference works on the frames before it
    inference (VideoStream)           takes up to ``batch_frames`` frames at a time: gives their faces track ids
                                      (``tracker.IoUTracker``, which also carries boxes between detections),
                                      classifies all faces of the batch in one forward pass, smooths each track
                                      (``smoothing``); iterating it yields ``VideoFrame`` results
    analyze()                         consumes the stream: timeline rows (``timeline.Timeline``, CSV written as it
                                      goes), the annotated video (``writers.AnnotatedVideoWriter``, its own
                                      thread), the live window (``writers.Window``)

Memory is flat however long the video: the queues are bounded, nothing keeps frames, and the timeline keeps
about 100 bytes per face per frame. A file is read at the pipeline's pace and never loses a frame. A live source
(camera, stream) is read as fast as it delivers; when the pipeline is slower, the oldest waiting frame is dropped
(``VideoFrame.dropped`` counts them) so the results never fall behind the camera. Ctrl-C (KeyboardInterrupt) in
``analyze`` stops the stream and still finishes every output: the annotated video is finalised, the CSV holds
every row so far, the JSON, Parquet, summary and plot describe the frames processed.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import cv2
import numpy as np

from ferkit.inference.detectors import Detection
from ferkit.inference.results import FaceResult
from ferkit.transforms.views import ADAPTIVE_STAGES, VIEW_COUNTS
from ferkit.video.smoothing import DEFAULT_ALPHA, Smoother, make_smoother
from ferkit.video.sources import DEFAULT_MAX_FRAME_SIDE, Frame, FrameSource, VideoError, open_source
from ferkit.video.tracker import IoUTracker

if TYPE_CHECKING:
    from ferkit.inference.recognizer import Recognizer
    from ferkit.video.timeline import Timeline

log = logging.getLogger(__name__)

#: Test-time augmentation of the video path: the face and its mirror image. Smoothing averages each track over
#: frames, which do what the photo default's shifted copies do. On FER2013 PublicTest the default model's INT8
#: twin scores 70.55% with flip, 71.47% with its shipped adaptive, 71.72% with flip_shift, 69.35% with none;
#: adaptive costs flip's two views a face and up to eight more for the faces flip is unsure of, so flip is never
#: slower, and a steady frame rate matters more in video (benchmarks/bench_video.py).
VIDEO_TTA = "flip"


@dataclass(frozen=True)
class TrackedFace:
    """One face in one frame: its track id, box (x, y, w, h, clipped to the frame), detector score (NaN where the
    tracker carried the box between detections), landmarks, the frame's own ``emotion`` and ``probs``, and the
    track's smoothed ``emotion_smooth`` and ``probs_smooth`` (equal to the raw ones without smoothing). Faces
    smaller than the recognizer's ``min_face`` have no emotion and empty probabilities."""

    track_id: int
    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None
    emotion: str | None
    probs: dict[str, float]
    emotion_smooth: str | None
    probs_smooth: dict[str, float]

    def result(self, smoothed: bool = True) -> FaceResult:
        """As a FaceResult (what drawing takes), with the smoothed or the raw probabilities."""
        if smoothed:
            return FaceResult(self.box, self.score, self.landmarks, self.emotion_smooth, self.probs_smooth)
        return FaceResult(self.box, self.score, self.landmarks, self.emotion, self.probs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id, "box": list(self.box),
            "score": None if np.isnan(self.score) else round(self.score, 4),
            "landmarks": None if self.landmarks is None else [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "emotion": self.emotion, "probs": {k: round(v, 6) for k, v in self.probs.items()},
            "emotion_smooth": self.emotion_smooth,
            "probs_smooth": {k: round(v, 6) for k, v in self.probs_smooth.items()},
        }


@dataclass
class VideoFrame:
    """The results for one frame: ``index`` in the source (gaps: dropped frames), ``time_s``, the ``faces``
    with their track ids, whether the detector ran on it (``detected``), ``dropped`` (frames the live source
    dropped so far) and the BGR ``image`` itself."""

    index: int
    time_s: float
    faces: list[TrackedFace]
    detected: bool
    dropped: int = 0
    image: np.ndarray | None = field(default=None, repr=False)


# ---------------------------------------------------------------------------------------------------------------
# The reader and detector threads, and the bounded queues between them


class FrameQueue:
    """A bounded queue between two pipeline threads. When full, ``put`` waits (files: nothing is lost) or, with
    ``drop_oldest``, discards the oldest item and counts it in ``dropped`` (live sources: what is taken next is
    always recent). The producer ``close``s it, with the error that stopped it if any; the consumer ``cancel``s
    it to stop the producer, whose next ``put`` then returns False."""

    def __init__(self, capacity: int, *, drop_oldest: bool = False):
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self.error: BaseException | None = None
        self.closed = False
        self.cancelled = False
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()

    def put(self, item: Any) -> bool:
        with self._cond:
            if self.drop_oldest:
                while len(self._items) >= self.capacity:
                    self._items.popleft()
                    self.dropped += 1
            else:
                while len(self._items) >= self.capacity and not self.cancelled:
                    self._cond.wait()
            if self.cancelled:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def take(self, n: int, *, wait_for: int = 1) -> list:
        """Up to ``n`` items, once ``wait_for`` are there (or the producer is done); [] at the end."""
        wait_for = min(wait_for, self.capacity)
        with self._cond:
            while len(self._items) < wait_for and not self.closed and not self.cancelled:
                self._cond.wait()
            out = [self._items.popleft() for _ in range(min(n, len(self._items)))]
            self._cond.notify_all()
            return out

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self.closed = True
            self.error = self.error or error
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()


class FrameReader:
    """The reader thread: decodes ``source`` into ``queue``, at most ``max_frames`` frames. It also releases the
    source when it stops, so a capture is never released while it is being read."""

    def __init__(self, source: FrameSource, queue: FrameQueue, *, max_frames: int | None = None):
        self.source = source
        self.queue = queue
        self.max_frames = max_frames
        self.read_count = 0
        self.thread = threading.Thread(target=self._run, name="ferkit-video-reader", daemon=True)

    def _run(self) -> None:
        error = None
        try:
            while self.max_frames is None or self.read_count < self.max_frames:
                frame = self.source.read()
                if frame is None:
                    break
                self.read_count += 1
                if not self.queue.put(frame):
                    break
        except BaseException as exc:  # handed to the consumer, which decides what it means
            error = exc
        finally:
            self.source.close()
            self.queue.close(error)


class DetectionThread:
    """The detector thread: runs the face detector on every ``detect_every``-th frame it takes from ``frames``
    (keeping the ``max_faces`` largest faces), and queues (frame, detections or None) into ``queue``. It runs
    beside inference, so detecting frame k+1 overlaps with classifying frame k."""

    def __init__(self, detector: Any, frames: FrameQueue, queue: FrameQueue, *, detect_every: int,
                 max_faces: int | None):
        self.detector = detector
        self.frames = frames
        self.queue = queue
        self.detect_every = detect_every
        self.max_faces = max_faces
        self.thread = threading.Thread(target=self._run, name="ferkit-video-detector", daemon=True)

    def _run(self) -> None:
        n, error = 0, None
        try:
            while True:
                batch = self.frames.take(1)
                if not batch:
                    error = self.frames.error
                    break
                (frame,) = batch
                found = None
                if n % self.detect_every == 0:
                    found = self.detector.detect(frame.image, "bgr")
                    if self.max_faces is not None and len(found) > self.max_faces:
                        largest = sorted(range(len(found)), key=lambda i: -found[i].box[2] * found[i].box[3])
                        found = [found[i] for i in sorted(largest[:self.max_faces])]  # still left to right
                n += 1
                if not self.queue.put((frame, found)):
                    break
        except BaseException as exc:
            error = exc
        finally:
            self.frames.cancel()  # the reader stops too
            self.queue.close(error)


# ---------------------------------------------------------------------------------------------------------------
# Inference


class VideoStream:
    """Per-frame results of a video source: iterate it for ``VideoFrame`` objects (single use; ``close()`` or
    ``with`` stops it early). ``Recognizer.stream`` and ``ferkit.video.stream`` build one.

    detect_every: run the detector on every Nth frame; the tracker carries boxes in between (faster; boxes lag a
        little on fast motion). max_faces: keep the K largest faces of each frame. smooth: weight of the newest
        frame in each track's moving average, per 1/30 s (``smoothing``), None for raw probabilities, or
        a Smoother.
    track_gap_s: a face unseen for less than this keeps its track id. iou_threshold: the least overlap for a
        detection to continue a track. batch_frames: frames classified together (one forward pass for all their
        faces); a live source batches only what is already queued, so it waits for nothing.
    fps: the frame rate of a folder of frames (default 30), or an override for a file. max_frame_side: frames
        larger than this are refused. max_frames: stop after this many frames read.

    While it is being iterated, OpenCV's thread pool is set to one thread (the pipeline has threads of its own);
    the previous setting comes back when the stream ends or is closed.
    """

    def __init__(self, recognizer: Recognizer, source: Any, *, detect_every: int = 1, max_faces: int | None = None,
                 smooth: float | Smoother | None = DEFAULT_ALPHA, track_gap_s: float = 1.0,
                 iou_threshold: float = 0.3, batch_frames: int = 8, fps: float | None = None,
                 max_frame_side: int | None = DEFAULT_MAX_FRAME_SIDE, max_frames: int | None = None):
        if detect_every < 1 or batch_frames < 1 or (max_faces is not None and max_faces < 1):
            raise VideoError(f"detect_every and batch_frames must be at least 1 and max_faces at least 1 (or None); "
                             f"got {detect_every}, {batch_frames}, {max_faces}")
        if track_gap_s <= 0 or not 0 < iou_threshold < 1 or (max_frames is not None and max_frames < 1):
            raise VideoError(f"track_gap_s must be positive, iou_threshold in (0, 1) and max_frames at least 1; got "
                             f"{track_gap_s}, {iou_threshold}, {max_frames}")
        if isinstance(smooth, (int, float)) and not 0 < smooth <= 1:
            raise VideoError(f"the smoothing weight must be in (0, 1] (1: none; --no-smooth); got {smooth}")
        self.recognizer = recognizer
        self.batch_frames = batch_frames
        self.source = open_source(source, fps=fps, max_frame_side=max_frame_side)
        # The gap is in source frames; at least two detection intervals, or --detect-every would end every track.
        gap = max(1, round(track_gap_s * self.source.fps), 2 * detect_every)
        self.tracker = IoUTracker(iou_threshold=iou_threshold, gap=gap)
        self.smoother = make_smoother(smooth, self.source.fps)
        # A live source keeps only the newest frame waiting at each step, so results are never more than a few
        # frames behind the camera; a file keeps a batch or two in flight.
        live = self.source.live
        self._frames_q = FrameQueue(1 if live else 2 * batch_frames, drop_oldest=live)
        self._detected_q = FrameQueue(1 if live else 2 * batch_frames)
        self.reader = FrameReader(self.source, self._frames_q, max_frames=max_frames)
        self.detection = DetectionThread(recognizer.detector, self._frames_q, self._detected_q,
                                         detect_every=detect_every, max_faces=max_faces)
        self._iter: Iterator[VideoFrame] | None = None
        self._started = False

    # -- what the source is ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def fps(self) -> float:
        return self.source.fps

    @property
    def live(self) -> bool:
        return self.source.live

    @property
    def frame_count(self) -> int | None:
        return self.source.frame_count

    @property
    def dropped(self) -> int:
        return self._frames_q.dropped

    @property
    def frames_read(self) -> int:
        return self.reader.read_count

    # -- iteration ---------------------------------------------------------------------------------------------

    def __iter__(self) -> VideoStream:
        return self

    def __next__(self) -> VideoFrame:
        if self._iter is None:
            self._iter = self._frames()
        return next(self._iter)

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop reading; the source is released. Safe to call more than once, or before iterating."""
        if self._iter is not None:
            self._iter.close()
        if not self._started:
            self.source.close()
        self._stop_threads()

    def _stop_threads(self, timeout: float = 2.0) -> None:
        self._detected_q.cancel()
        self._frames_q.cancel()
        for thread in (self.detection.thread, self.reader.thread):
            if thread.is_alive():
                thread.join(timeout)  # a dead network stream can block in read(); the threads are daemons

    def _frames(self) -> Iterator[VideoFrame]:
        self._started = True
        # OpenCV's own thread pool off while the pipeline runs: decoding, detection, inference and encoding
        # already run on threads of their own, and OpenCV's pool on top of them oversubscribes the cores. The
        # setting is process-wide, so it is restored after.
        threads = cv2.getNumThreads()
        cv2.setNumThreads(1)
        self.reader.thread.start()
        self.detection.thread.start()
        wait_for = 1 if self.live else self.batch_frames
        try:
            while True:
                batch = self._detected_q.take(self.batch_frames, wait_for=wait_for)
                if not batch:
                    break
                yield from self._process(batch)
            self._check_error(self._detected_q.error)
        finally:
            cv2.setNumThreads(threads)
            self._stop_threads()

    def _check_error(self, error: BaseException | None) -> None:
        if error is None:
            return
        if isinstance(error, (VideoError, KeyboardInterrupt)):
            raise error
        where = f"after {self.reader.read_count} frames"
        if self.live:  # a stream that drops: the frames so far are the result
            log.warning("%s ended %s: %s", self.name, where, error)
            return
        raise VideoError(f"reading {self.name} failed {where}: {error}") from error

    def _process(self, batch: list[tuple[Frame, list[Detection] | None]]) -> list[VideoFrame]:
        rec = self.recognizer
        tracked_faces: list[list[tuple[int, Detection]]] = []
        for frame, found in batch:
            if found is not None:
                ids = self.tracker.update(found, frame.index)
                self.smoother.forget(self.tracker.removed)
                tracked_faces.append(list(zip(ids, found)))
            else:
                tracked_faces.append(self.tracker.predict(frame.index))
        # Every face of every frame of the batch in one forward pass (frames are BGR).
        probs, _ = rec.classify_detections([f.image for f, _ in batch], ["bgr"] * len(batch),
                                           [[d for _, d in faces] for faces in tracked_faces])
        out = []
        labels = rec.labels
        for (frame, found), faces, frame_probs in zip(batch, tracked_faces, probs):
            h, w = frame.image.shape[:2]
            tracked = []
            for (tid, det), p in zip(faces, frame_probs):
                box = _clip(det.box, w, h)
                if box is None:  # a carried box that left the frame
                    continue
                landmarks = None if det.landmarks is None else tuple((float(x), float(y)) for x, y in det.landmarks)
                if p is not None:
                    s = self.smoother.update(tid, p, frame.index)
                    raw = dict(zip(labels, map(float, p)))
                    smooth = dict(zip(labels, map(float, s)))
                    face = TrackedFace(tid, box, float(det.score), landmarks, labels[int(np.argmax(p))], raw,
                                       labels[int(np.argmax(s))], smooth)
                else:
                    face = TrackedFace(tid, box, float(det.score), landmarks, None, {}, None, {})
                tracked.append(face)
            out.append(VideoFrame(frame.index, frame.time_s, tracked, found is not None, self.dropped, frame.image))
        return out


def _clip(box: tuple[float, float, float, float], w: int, h: int) -> tuple[int, int, int, int] | None:
    x0, y0 = max(0, round(box[0])), max(0, round(box[1]))
    x1, y1 = min(w, round(box[0] + box[2])), min(h, round(box[1] + box[3]))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def stream(recognizer: Recognizer, source: Any, **options: Any) -> VideoStream:
    """Per-frame results of ``source`` (a video file, a folder of frames, a camera index, a stream URL or a
    FrameSource) with ``recognizer``; options as ``VideoStream``. The source is opened now, so a bad one fails
    here rather than at the first frame."""
    return VideoStream(recognizer, source, **options)


def video_recognizer(model: Any = "default", detector: Any = "auto", *, tta: str | None = "auto",
                     threads: int | None = 1, **options: Any) -> Recognizer:
    """A Recognizer set up for video (options as ``Recognizer``).

    ``tta="auto"`` is ``VIDEO_TTA`` where the model's own TTA is dearer and the model can run VIDEO_TTA without an
    export that needs missing packages (the torch backend; a shipped graph or an .onnx file without TTA inside,
    whose views the host cuts; an ONNX model exported once into the cache, which needs PyTorch), else the model's own;
    None is always the model's own. ``threads``: ONNX Runtime's threads per forward pass. One: the pipeline's
    reader and writer threads keep the other cores busy, and a second pool of spinning threads on top of them
    costs more than it gives (about a third of the frame rate on 2 cores); None is ONNX Runtime's own choice.
    """
    from ferkit.inference.classifier import resolve_backend
    from ferkit.inference.recognizer import Recognizer

    backend, device = options.pop("backend", "auto"), options.get("device", "auto")
    if tta == "auto":
        own, cheap_available = _tta_facts(model, backend, device)
        tta = VIDEO_TTA if cheap_available and VIEWS.get(own, 0) > VIEWS[VIDEO_TTA] else None
    if threads and isinstance(model, (str, Path)) and resolve_backend(model, backend, device) == "onnx":
        from ferkit.inference.onnx_backend import load_onnx_classifier

        model = load_onnx_classifier(model, tta=tta, device=device, batch_size=options.get("batch_size", 64),
                                     threads=threads)
        tta = None  # it is in the session now
    return Recognizer(model, detector, tta=tta, backend=backend, **options)


#: Forward passes per face of each TTA mode: video swaps a model's own TTA for VIDEO_TTA only when it is dearer.
#: Adaptive runs 2 to 10 (flip, then flip_shift for unsure faces): never cheaper than flip.
VIEWS = {**VIEW_COUNTS, "adaptive": VIEW_COUNTS[ADAPTIVE_STAGES[1]]}


def _tta_facts(model: Any, backend: str, device: str) -> tuple[str | None, bool]:
    """(the TTA ``model`` ships with, whether it can run VIDEO_TTA without an export that needs missing packages),
    with an ONNX file's metadata read once. (None, False) for a ready classifier, whose TTA is its own business,
    and for an ONNX file that cannot be read (loading the model reports that, with its own message)."""
    from ferkit import deps
    from ferkit.inference.classifier import resolve_backend
    from ferkit.inference.onnx_backend import file_tta
    from ferkit.paths import WEIGHTS_DIR, cache_dir

    if hasattr(model, "predict_proba") or isinstance(model, tuple):
        return None, False
    spec = str(model)
    if spec.endswith(".onnx"):  # the host can cut other views only where none are inside the graph
        meta = _onnx_metadata(spec) if Path(spec).is_file() else None
        if meta is None:
            return None, False
        graph, own = file_tta(meta)
        return own, graph == "none"
    on_torch = resolve_backend(model, backend, device) == "torch"
    shipped = WEIGHTS_DIR / f"{spec}.onnx"
    if not on_torch and shipped.is_file():
        meta = _onnx_metadata(shipped)
        if meta is None:
            return None, False
        graph, own = file_tta(meta)
        if graph == "none":
            return own, True  # shipped without TTA inside: the host cuts the views
    else:
        from ferkit.models.checkpoint import load_checkpoint

        own = load_checkpoint(spec)["config"].get("tta", "none")
        if on_torch:
            return own, True
    if deps.available("torch") and deps.available("onnx"):
        return own, True  # exported once into the cache
    return own, any(cache_dir("onnx").glob(f"{Path(spec).stem}-*-tta_none.onnx"))  # exported earlier, host views


def _onnx_metadata(path: Path | str) -> dict[str, str] | None:
    """An ONNX file's metadata, read without a session; None for a file that cannot be read."""
    from ferkit.inference.onnx_proto import read_metadata

    try:
        return read_metadata(path)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------------------------------------------------------
# analyze: the stream into outputs


def analyze(source: Any, recognizer: Recognizer | None = None, *, out: str | Path | None = None,
            csv: str | Path | None = None, json: str | Path | None = None, parquet: str | Path | None = None,
            summary: str | Path | None = None, plot: str | Path | None = None, show: bool = False,
            on_frame: Callable[[VideoFrame], None] | None = None, **options: Any) -> Timeline:
    """Run ``source`` through the pipeline and return its Timeline; optionally write the annotated video
    (``out``: .mp4, .avi or .mkv), the timeline (``csv``, written as frames are processed; ``json``;
    ``parquet``, needs pyarrow), the per-track ``summary`` (.csv or .json) and the timeline ``plot`` (.png,
    needs matplotlib). ``show``: a window with the overlay, where OpenCV has a GUI (``q`` or Esc quits).
    ``on_frame`` is called after each frame (progress bars). Other options as ``VideoStream``.

    Ctrl-C stops the run and still completes every output; the returned timeline then has ``interrupted`` set.
    No face in the whole video is not an error: the timeline and summary are empty.
    """
    from ferkit.video.timeline import Timeline, check_outputs, write_summary
    from ferkit.video.writers import AnnotatedVideoWriter, RateMeter, Window, check_video_path, draw_overlay

    rec = recognizer if recognizer is not None else video_recognizer()
    check_outputs(csv=csv, json=json, parquet=parquet, summary=summary, plot=plot)
    if out is not None:
        check_video_path(out)
    vs = VideoStream(rec, source, **options)
    timeline = Timeline(rec.labels, fps=vs.fps, source=vs.name)
    writer: AnnotatedVideoWriter | None = None
    window = None
    meter = RateMeter()
    started = time.perf_counter()
    try:
        if csv:
            timeline.stream_csv(csv)
        window = Window.open(vs.name) if show else None
        for frame in vs:
            timeline.add(frame)
            rate = meter.tick()
            drawn = draw_overlay(frame.image.copy(), frame.faces, rec.labels, rate) if window else None
            if out is not None:
                if writer is None:
                    h, w = frame.image.shape[:2]
                    writer = AnnotatedVideoWriter(out, vs.fps, (w, h), rec.labels)
                writer.write(frame, rate, drawn)
            if on_frame is not None:
                on_frame(frame)
            if window is not None and not window.show(drawn):
                timeline.stopped_by = "window"
                break
    except KeyboardInterrupt:
        timeline.interrupted = True
        timeline.stopped_by = "interrupt"
        log.info("interrupted after %d frames; finishing the outputs", timeline.frames)
    finally:
        # Everything below runs however the loop ended (done, q, Ctrl-C, a stream or decoder failing), so every
        # output describes exactly the frames processed.
        vs.close()
        timeline.dropped = vs.dropped
        timeline.elapsed_s = time.perf_counter() - started
        if window is not None:
            window.close()
        if writer is not None:
            writer.close()
        timeline.close()
        if json:
            timeline.to_json(json)
        if parquet:
            timeline.to_parquet(parquet)
        if summary:
            write_summary(timeline.summary(), summary, rec.labels)
        if plot:
            timeline.plot(plot)
    if out is not None and writer is None:
        log.warning("no frames were processed: %s was not written", out)
    return timeline
