"""Face detection, and the YuNet model file (alignment and cropping: ``ferkit.inference.align``).

Detectors share one small interface: ``detect(image, color="bgr") -> list[Detection]`` with boxes in the
input image's pixel coordinates.

- ``haar``: OpenCV's bundled frontal-face cascade; needs nothing downloaded, misses turned and small faces.
  OpenCV 5 dropped it: there it is reported as unavailable.
- ``yunet``: the YuNet ONNX model (230 kB): better recall, 5 landmarks, faster. It runs on ONNX Runtime (about
  twice as fast as OpenCV's ``FaceDetectorYN`` on the same file, with the same boxes), or on OpenCV
  (``engine="opencv"``).
- ``none``: the whole image is the face (pre-cropped datasets such as FER2013).
- ``auto``: YuNet, fetched once into ferkit's cache (SHA-256 pinned) when it is not there yet; without it
  (``FERKIT_OFFLINE=1``, ``download=False`` or no network) Haar, with one warning per process saying how to get
  YuNet (``ferkit download``).

Large images are downscaled to ``max_side`` for detection and boxes are mapped back, so a 12-megapixel photo
costs what a 480-pixel one does. OpenCV detector objects keep per-call state (input size), so each thread gets
its own instance; a detector can be shared by a web server's worker threads.
"""
from __future__ import annotations

import hashlib
import logging
import os
import threading
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import cv2
import numpy as np

from ferkit.errors import FerkitError
from ferkit.paths import atomic_write, sha256_file

log = logging.getLogger(__name__)

DETECTORS = ("auto", "yunet", "haar", "none")

YUNET_FILE = "face_detection_yunet_2023mar.onnx"
YUNET_URL = (
    "https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx"
)
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

#: Landmark order of ``Detection.landmarks`` (YuNet's): the eye on the image's left first.
LANDMARK_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")

# Detection runs on images no larger than this (boxes are mapped back to full resolution). Detection cost grows
# with the pixel count and dominates a frame's latency: at 480, a 640 x 480 frame is detected in half the time
# of full resolution while faces down to about 13 pixels (far below what can be classified) are still found;
# in a photo, faces down to about 1/40 of its longer side. Raise it (max_side=, --max-side) for group photos
# with small faces. YuNet also finds very close-up faces more reliably after downscaling.
DEFAULT_MAX_SIDE = 480


class DetectorError(FerkitError):
    """A detector that cannot run here: unknown name, missing or corrupt model file, OpenCV without it."""


class _DownloadError(DetectorError):
    """A failed YuNet download; ``reason`` is the short form that ``auto``'s fallback warning quotes."""

    def __init__(self, message: str, reason: str):
        super().__init__(f"{message}; {_yunet_instructions(downloading=True)}")
        self.reason = reason


# `auto` without YuNet warns once per process, not once per Recognizer: a web server or a script looping over
# folders builds many. (A race between threads can at worst print the line twice.)
_fallback_warned = False


@dataclass(frozen=True)
class Detection:
    """One face: ``box`` is (x, y, w, h) in input pixels (may extend past the border for cut faces),
    ``landmarks`` 5 x 2 (x, y) in LANDMARK_NAMES order or None when the detector gives none."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = field(default=None, compare=False)


class FaceDetector(Protocol):
    name: str

    def detect(self, image: np.ndarray, color: str = "bgr") -> list[Detection]: ...


# ---------------------------------------------------------------------------------------------------------------
# Detectors


class _ThreadLocalDetector:
    """Base for detectors wrapping an OpenCV object that must not be shared between threads."""

    name = "base"

    def __init__(self, *, min_face: int, max_side: int | None):
        self.min_face = int(min_face)
        self.max_side = max_side
        self._local = threading.local()

    def _engine(self):
        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = self._local.engine = self._create_engine()
        return engine

    def _create_engine(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def detect(self, image: np.ndarray, color: str = "bgr") -> list[Detection]:
        small, scale = downscale(image, self.max_side)  # before the colour conversion: fewer pixels to copy
        # The detector sees the downscaled image, so its minimum face shrinks with it.
        found = self._detect(_as_bgr(small, color), max(1, round(self.min_face * scale)))
        if scale != 1.0:
            found = [_rescale(d, 1.0 / scale) for d in found]
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))

    def _detect(self, bgr: np.ndarray, min_face: int) -> list[Detection]:  # pragma: no cover - abstract
        raise NotImplementedError


class HaarDetector(_ThreadLocalDetector):
    """OpenCV's frontal-face Haar cascade. It gives no confidence, so ``score`` is always 1.0."""

    name = "haar"

    def __init__(self, *, min_face: int = 20, max_side: int | None = DEFAULT_MAX_SIDE, scale_factor: float = 1.1,
                 min_neighbors: int = 6, cascade: str | Path | None = None):
        super().__init__(min_face=min_face, max_side=max_side)
        missing = haar_unavailable()
        if missing:
            raise DetectorError(f"the Haar detector is not available: {missing}; use the YuNet detector "
                                f"(`ferkit download` fetches its model)")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        default = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade_path = Path(cascade) if cascade else default
        self._create_engine()  # fail now, at construction, rather than on the first image

    def _create_engine(self) -> cv2.CascadeClassifier:
        cascade = cv2.CascadeClassifier(str(self.cascade_path))
        if cascade.empty():
            raise DetectorError(f"cannot load the Haar cascade {self.cascade_path}")
        return cascade

    def _detect(self, bgr: np.ndarray, min_face: int) -> list[Detection]:
        # Histogram equalisation is what the cascade was trained with; it recovers dim and low-contrast faces.
        gray = cv2.equalizeHist(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        boxes = self._engine().detectMultiScale(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_face, min_face)
        )
        return [Detection(tuple(float(v) for v in b), 1.0, None) for b in boxes]


#: Where YuNet runs: ``auto`` is ONNX Runtime (a base dependency), ``opencv`` is OpenCV's ``FaceDetectorYN``.
YUNET_ENGINES = ("auto", "onnxruntime", "opencv")


class YuNetDetector(_ThreadLocalDetector):
    """The YuNet model: boxes, scores and 5 landmarks, on ONNX Runtime or OpenCV's ``FaceDetectorYN``.

    ``threads``: ONNX Runtime's threads (default: OpenCV's ``cv2.getNumThreads()``, so ``cv2.setNumThreads``
    governs the detector on either engine)."""

    name = "yunet"

    def __init__(self, model_path: str | Path, *, min_face: int = 20, max_side: int | None = DEFAULT_MAX_SIDE,
                 score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 5000,
                 engine: str = "auto", threads: int | None = None):
        super().__init__(min_face=min_face, max_side=max_side)
        if engine not in YUNET_ENGINES:
            raise DetectorError(f"unknown YuNet engine {engine!r}; choose one of {', '.join(YUNET_ENGINES)}")
        self.model_path = Path(model_path)
        # 0.6 rather than opencv_zoo's 0.9: turned, shouting and low-contrast faces score 0.5-0.8 and
        # non-faces in the test photos stay below 0.5.
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.engine = "onnxruntime" if engine == "auto" else engine
        self.threads = threads
        self._local.engine = self._create_engine()  # fail now, at construction, rather than on the first image

    def _create_engine(self) -> "cv2.FaceDetectorYN | YuNetOnnx":
        if self.engine == "onnxruntime":
            return YuNetOnnx(self.model_path, score_threshold=self.score_threshold,
                             nms_threshold=self.nms_threshold, top_k=self.top_k,
                             threads=self.threads or max(1, cv2.getNumThreads()))
        try:
            return cv2.FaceDetectorYN.create(
                str(self.model_path), "", (320, 320), self.score_threshold, self.nms_threshold, self.top_k
            )
        except cv2.error as exc:
            raise DetectorError(
                f"cannot load the YuNet model {self.model_path}: {exc.err or exc}; "
                f"{_yunet_instructions(self.model_path)}"
            ) from exc

    def _detect(self, bgr: np.ndarray, min_face: int) -> list[Detection]:
        engine = self._engine()
        h, w = bgr.shape[:2]
        engine.setInputSize((w, h))
        _, faces = engine.detect(bgr)
        if faces is None:
            return []
        out = []
        for row in faces:
            box = tuple(float(v) for v in row[:4])
            if min(box[2], box[3]) < min_face:
                continue
            out.append(Detection(box, float(row[14]), row[4:14].reshape(5, 2).astype(np.float32)))
        return out


class YuNetOnnx:
    """YuNet on ONNX Runtime, decoded as OpenCV's ``FaceDetectorYN`` decodes it, with its interface
    (``setInputSize``, ``detect`` -> (1, N x 15 rows or None): box x, y, w, h, five landmarks, score).

    The image is padded right and bottom to multiples of 32 (the network's largest stride); each of the 8, 16
    and 32 px grids predicts, per cell, a class and an objectness score (the face's score is the square root of
    their product), a box (centre offset in cells, log size) and five landmarks (offsets in cells); boxes above
    the score threshold go through OpenCV's NMS. On the shared photos this gives FaceDetectorYN's faces to
    1e-4 px, in about half its time on x86 CPUs (ONNX Runtime's convolutions are faster than OpenCV DNN's)."""

    STRIDES = (8, 16, 32)

    def __init__(self, model_path: str | Path, *, score_threshold: float, nms_threshold: float, top_k: int,
                 threads: int = 1):
        import onnxruntime as ort

        from ferkit.inference.onnx_proto import free_io_shapes

        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.log_severity_level = 3  # its warnings about the undeclared shapes are expected
        # Its pool's threads sleep as soon as a frame is detected instead of spinning: the classifier's pool
        # runs next on the same cores, and with both spinning two threads cost more than one (benchmarks, 2
        # threads: a 5-face frame with flip TTA 26 ms with spinning, 17 ms without; no change on one thread).
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            model = free_io_shapes(Path(model_path).read_bytes())
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # OSError, ValueError from the edit, onnxruntime's own exception types
            raise DetectorError(f"cannot load the YuNet model {model_path}: {exc}; "
                                f"{_yunet_instructions(model_path)}") from exc
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        missing = sorted({f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in self.STRIDES} - set(self.outputs))
        if missing:
            raise DetectorError(f"{model_path} is not a YuNet model (it has no {', '.join(missing)} output); "
                                f"{_yunet_instructions(model_path)}")

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - FaceDetectorYN's name
        pass  # every call pads its own image

    def detect(self, bgr: np.ndarray) -> tuple[int, np.ndarray | None]:
        h, w = bgr.shape[:2]
        ph, pw = -(-h // 32) * 32, -(-w // 32) * 32
        x = np.zeros((1, 3, ph, pw), np.float32)
        x[0, :, :h, :w] = bgr.transpose(2, 0, 1)
        out = dict(zip(self.outputs, self.session.run(None, {self.input: x})))
        boxes, landmarks, scores = [], [], []
        for s in self.STRIDES:
            cols = pw // s
            score = np.sqrt(np.clip(out[f"cls_{s}"][0, :, 0], 0, 1) * np.clip(out[f"obj_{s}"][0, :, 0], 0, 1))
            idx = np.flatnonzero(score >= self.score_threshold)
            if not len(idx):
                continue
            row, col = (idx // cols).astype(np.float32), (idx % cols).astype(np.float32)
            b, k = out[f"bbox_{s}"][0, idx], out[f"kps_{s}"][0, idx].reshape(-1, 5, 2)
            bw, bh = np.exp(b[:, 2]) * s, np.exp(b[:, 3]) * s
            boxes.append(np.stack([(col + b[:, 0]) * s - bw / 2, (row + b[:, 1]) * s - bh / 2, bw, bh], 1))
            landmarks.append(np.stack([(k[..., 0] + col[:, None]) * s, (k[..., 1] + row[:, None]) * s], -1))
            scores.append(score[idx])
        if not boxes:
            return 1, None
        boxes, landmarks, scores = np.concatenate(boxes), np.concatenate(landmarks), np.concatenate(scores)
        keep = np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score_threshold,
                                           self.nms_threshold, top_k=self.top_k), dtype=np.int64).reshape(-1)
        rows = np.concatenate([boxes[keep], landmarks[keep].reshape(-1, 10), scores[keep, None]], 1)
        return 1, rows.astype(np.float32)


class WholeImageDetector:
    """``none``: the input already is a face crop; the whole image is one face."""

    name = "none"

    def detect(self, image: np.ndarray, color: str = "bgr") -> list[Detection]:
        h, w = image.shape[:2]
        return [Detection((0.0, 0.0, float(w), float(h)), 1.0, None)]


def create_detector(name: str = "auto", *, model_path: str | Path | None = None, min_face: int = 20,
                    max_side: int | None = DEFAULT_MAX_SIDE, download: bool = True,
                    engine: str = "auto") -> FaceDetector:
    """Build a detector by name.

    ``model_path`` is the YuNet ONNX file; without it ferkit looks in its cache dir and, with ``download=True``
    and no ``FERKIT_OFFLINE=1``, downloads it there once (SHA-256 pinned). ``auto`` falls back to Haar, with one
    warning per process, when YuNet cannot be had; an explicit ``yunet`` fails instead. ``engine``: where YuNet
    runs (YUNET_ENGINES).
    """
    if name not in DETECTORS:
        raise DetectorError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if name == "none":
        return WholeImageDetector()
    if name == "haar":
        return HaarDetector(min_face=min_face, max_side=max_side)
    path, why_not = find_yunet_model(model_path), ""
    if path is None:  # no file given (find_yunet_model refuses a missing one) and none in the cache
        path, why_not = _fetch_yunet(download, quiet=name == "auto")
    if path is not None:
        return YuNetDetector(path, min_face=min_face, max_side=max_side, engine=engine)
    if name == "yunet":
        raise DetectorError(f"the YuNet model file is not available ({why_not}); {_yunet_instructions()}")
    missing_haar = haar_unavailable()
    if missing_haar:
        raise DetectorError(f"no face detector available: YuNet is not in the cache ({why_not}) and {missing_haar}; "
                            f"run `ferkit download` or pass --detector-model FILE (Python: detector_model=...), or "
                            f"use detector 'none' for images that already are face crops")
    _warn_fallback_once(why_not)
    return HaarDetector(min_face=min_face, max_side=max_side)


def _fetch_yunet(download: bool, *, quiet: bool) -> tuple[Path | None, str]:
    """Download YuNet into the cache if allowed: (path, "") or (None, why not)."""
    if not download:
        return None, "download=False"
    if _offline():
        return None, "FERKIT_OFFLINE is set"
    try:
        # A short timeout for the implicit fetch: a firewalled network should cost `auto` seconds, not half a minute.
        return download_yunet(timeout=10.0 if quiet else 30.0), ""
    except DetectorError as exc:
        if not quiet:
            raise
        return None, str(getattr(exc, "reason", exc))


def _warn_fallback_once(why_not: str) -> None:
    global _fallback_warned
    if _fallback_warned:
        return
    _fallback_warned = True
    # logging.warning, not warnings.warn: it shows by default both in the CLI (its log format) and in plain
    # Python (logging's last-resort handler prints warnings to stderr), without a source line attached.
    log.warning("no YuNet face detector model (%s): using the Haar cascade, which misses turned and small faces; "
                "get YuNet once with `ferkit download` (230 kB) or pass --detector-model FILE (Python: "
                "detector_model=...)", why_not)


def haar_unavailable() -> str | None:
    """Why OpenCV's Haar cascade cannot run here (OpenCV 5 removed it), or None when it can."""
    if not hasattr(cv2, "CascadeClassifier") or not hasattr(getattr(cv2, "data", None), "haarcascades"):
        return f"this OpenCV ({cv2.__version__}) has no Haar cascades (OpenCV 5 removed them)"
    return None


def describe_detector(detector: FaceDetector) -> str:
    """E.g. 'yunet (/home/u/.cache/ferkit/models/face_detection_yunet_2023mar.onnx, onnxruntime)'."""
    path, engine = getattr(detector, "model_path", None), getattr(detector, "engine", None)
    where = ", ".join(str(v) for v in (path, engine) if v)
    return f"{detector.name} ({where})" if where else detector.name


# ---------------------------------------------------------------------------------------------------------------
# The YuNet model file


def yunet_cache_path() -> Path:
    from ferkit.paths import cache_dir

    return cache_dir("models") / YUNET_FILE


def find_yunet_model(path: str | Path | None = None) -> Path | None:
    """The user's file (which must exist) or the cached one; None when neither is there."""
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            raise DetectorError(f"YuNet model {path} not found; {_yunet_instructions(path)}")
        return path
    cached = yunet_cache_path()
    return cached if cached.is_file() else None


def download_yunet(dest: str | Path | None = None, *, timeout: float = 30.0,
                   opener: Callable[..., Any] | None = None) -> Path:
    """Download YuNet into the cache, checking its SHA-256; DetectorError (with instructions) when offline. A
    file that does not match is never kept (the previous one, if any, stays). ``opener``: urlopen's stand-in."""
    dest = Path(dest) if dest else yunet_cache_path()
    opener = opener or urllib.request.urlopen  # looked up now, so that tests can replace it
    if _offline():
        raise _DownloadError("FERKIT_OFFLINE is set, not downloading YuNet (unset it to download)",
                             "FERKIT_OFFLINE is set")
    log.info("downloading the YuNet face detector (230 kB) from %s", YUNET_URL)
    try:
        with atomic_write(dest) as out, opener(YUNET_URL, timeout=timeout) as response:
            digest = hashlib.sha256()
            while chunk := response.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
            if digest.hexdigest() != YUNET_SHA256:
                raise _DownloadError(f"downloaded YuNet has SHA-256 {digest.hexdigest()}, expected {YUNET_SHA256}; "
                                     "not using it", "the download did not match its SHA-256")
    except OSError as exc:  # URLError, timeouts and socket errors are all OSErrors
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        raise _DownloadError(f"cannot download YuNet ({reason})", f"cannot download it: {reason}") from exc
    log.info("YuNet saved to %s", dest)
    return dest


def ensure_yunet(*, force: bool = False, timeout: float = 30.0,
                 opener: Callable[..., Any] | None = None) -> tuple[Path, bool]:
    """The cached YuNet file, downloaded when missing, not matching its SHA-256, or ``force``; returns the path
    and whether it was downloaded now (``ferkit download``)."""
    path = yunet_cache_path()
    if not force and path.is_file() and sha256_file(path) == YUNET_SHA256:
        return path, False
    return download_yunet(path, timeout=timeout, opener=opener), True


def _offline() -> bool:
    return os.environ.get("FERKIT_OFFLINE", "") not in ("", "0")


def _yunet_instructions(given: str | Path | None = None, *, downloading: bool = False) -> str:
    """How to get YuNet; ``downloading``: said when `ferkit download` itself failed, so not suggesting it."""
    by_hand = (f"download {YUNET_URL} (SHA-256 {YUNET_SHA256}) to {yunet_cache_path()}, or pass its path with "
               f"--detector-model FILE (Python: detector_model=...)")
    text = by_hand if downloading else f"run `ferkit download`, or {by_hand}"
    return text if given is None else f"check the path, or {text}"


# ---------------------------------------------------------------------------------------------------------------
# Geometry: downscaling for detection, alignment and cropping


def downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """Shrink so the longer side is at most ``max_side``; returns the image and the scale applied."""
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    # Far below half size, bilinear skips source pixels and aliases fine detail into false faces, so big photos
    # are area-averaged. From half size up every source pixel still reaches an output pixel, and bilinear is 5x
    # cheaper than INTER_AREA at a non-integer factor (640 x 480 to 480 x 360: 0.3 against 1.7 ms, a quarter of
    # YuNet's time) for the same faces (83 photo and video frames: same count, IoU >= 0.948; inference-speed.md).
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), scale


def _rescale(d: Detection, s: float) -> Detection:
    x, y, w, h = d.box
    lm = None if d.landmarks is None else d.landmarks * s
    return Detection((x * s, y * s, w * s, h * s), d.score, lm)


def _as_bgr(image: np.ndarray, color: str) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if color == "rgb":
        return np.ascontiguousarray(image[..., 2::-1])
    return image if image.shape[2] == 3 else np.ascontiguousarray(image[..., :3])
