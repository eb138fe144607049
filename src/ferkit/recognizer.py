"""The end-to-end inference API: image -> faces -> emotions.

    >>> from ferkit import Recognizer
    >>> from ferkit.assets import sample_image_path
    >>> rec = Recognizer()                                 # shipped "default" model, best detector available
    >>> faces = rec.predict(sample_image_path())           # path, bytes, PIL image or numpy array
    >>> faces[0].emotion, faces[0].to_dict()["box"]

A Recognizer loads its model and detector once and keeps no per-call state, so one instance serves a video
loop or every request of a threaded web server. Numpy arrays are taken as BGR (OpenCV's order, what
``cv2.imread`` and ``cv2.VideoCapture`` give) unless ``color="rgb"`` is passed; PIL images, paths and bytes
carry their own colour model.

This module imports neither torch nor onnxruntime: the chosen backend is imported when the model loads, so the
ONNX backend starts without paying for PyTorch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Protocol, Sequence

import cv2
import numpy as np

from ferkit.devices import resolve_device
from ferkit.errors import FerkitError
from ferkit.faces import (
    DEFAULT_MAX_SIDE, Detection, FaceDetector, create_detector, crop_faces, describe_detector,
)
from ferkit.imageio import ImageInput, load_image
from ferkit.paths import WEIGHTS_DIR
from ferkit.views import check_tta

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnx")


# ---------------------------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class FaceResult:
    """One face: ``box`` (x, y, w, h) in image pixels clipped to the image, the detector's ``score``, 5
    ``landmarks`` (x, y) or None, the top ``emotion`` and ``probs`` {label: p}. A face smaller than the
    recognizer's ``min_face`` is reported with ``emotion=None`` and empty ``probs``."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None
    emotion: str | None
    probs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data in the shape of the ``ferkit predict --json`` contract."""
        return {
            "box": list(self.box),
            "score": round(self.score, 4),
            "landmarks": None if self.landmarks is None else [[round(x, 1), round(y, 1)] for x, y in self.landmarks],
            "emotion": self.emotion,
            "probs": {k: round(v, 6) for k, v in self.probs.items()},
        }


# ---------------------------------------------------------------------------------------------------------------
# Classifiers: uint8 RGB face crops -> probabilities, one per backend


class Classifier(Protocol):
    """What the Recognizer needs from a backend; both read their settings from the model's own config."""

    labels: tuple[str, ...]
    input_size: int
    crop_size: int  # side of the face crops predict_proba wants (input_size / the config's face_crop)
    crop_margin: float
    tta: str
    description: str

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        """N x H x W x 3 RGB (or N x H x W gray) uint8 crops -> N x num_classes float32 probabilities."""
        ...


class TorchClassifier:
    """PyTorch backend: ``ferkit.inference.classify``, i.e. exactly the preprocessing used in evaluation."""

    backend = "torch"

    def __init__(self, model, config, *, device: str = "cpu", tta: str | None = None, batch_size: int = 64,
                 name: str = "model"):
        import torch

        # faces_to_tensor hands the model channels-last batches; matching weights let oneDNN skip a layout
        # conversion per convolution (about 2x faster on CPU for the small CNNs).
        self.model = model.to(memory_format=torch.channels_last)
        self.config, self.device = config, device
        self.tta = config.tta if tta is None else tta
        self.batch_size = batch_size
        self.labels = tuple(config.labels)
        self.input_size = int(config.input_size)
        self.crop_size = int(config.crop_size)
        self.crop_margin = float(config.crop_margin)
        self.description = f"{name} ({config.arch}, torch on {device}, tta={self.tta})"

    @classmethod
    def load(cls, spec: str | Path, *, device: str = "auto", tta: str | None = None,
             batch_size: int = 64) -> "TorchClassifier":
        from ferkit.checkpoint import load_model

        device = resolve_device(device)
        model, config = load_model(spec, device=device)
        return cls(model, config, device=device, tta=tta, batch_size=batch_size, name=Path(str(spec)).name)

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        from ferkit.inference import classify

        return classify(self.model, faces, self.config, tta=self.tta, batch_size=self.batch_size, device=self.device)


def resolve_backend(model: Any, backend: str = "auto", device: str = "auto") -> str:
    """"auto" runs .onnx files on ONNX Runtime, and shipped models too when onnxruntime is installed, the run is
    on CPU and the model's .onnx is shipped next to its .pt: that starts without importing torch (~0.5 s instead
    of ~3 s here) and is the faster CPU backend. Everything else (checkpoints, GPUs, in-memory models) runs on
    torch."""
    if backend not in BACKENDS:
        raise FerkitError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    spec = str(model) if isinstance(model, (str, Path)) else None
    if spec is not None and spec.endswith(".onnx"):
        return "onnx"  # the only runtime that can run it
    shipped_onnx = spec is not None and "/" not in spec and (WEIGHTS_DIR / f"{spec}.onnx").is_file()
    import importlib.util

    if shipped_onnx and device in ("auto", "cpu") and importlib.util.find_spec("onnxruntime") is not None:
        return "onnx"
    return "torch"


def load_classifier(model: Any = "default", *, backend: str = "auto", device: str = "auto", tta: str | None = None,
                    batch_size: int = 64) -> Classifier:
    """A shipped model name, a checkpoint (.pt), an exported .onnx file, an in-memory (nn.Module, ModelConfig)
    pair (torch backend) or a ready Classifier."""
    backend = resolve_backend(model, backend, device)
    if tta is not None:
        check_tta(tta)
    if hasattr(model, "predict_proba"):
        return model
    if isinstance(model, tuple):
        net, config = model
        device = resolve_device(device)
        return TorchClassifier(net.eval().to(device), config, device=device, tta=tta, batch_size=batch_size,
                               name=type(net).__name__)
    if backend == "onnx":
        from ferkit.export import load_onnx_classifier

        return load_onnx_classifier(model, tta=tta, device=device, batch_size=batch_size)
    if str(model).endswith(".onnx"):
        raise FerkitError(f"{model} is an ONNX file; use backend='onnx' (--backend onnx) to run it")
    return TorchClassifier.load(model, device=device, tta=tta, batch_size=batch_size)


# ---------------------------------------------------------------------------------------------------------------
# The Recognizer


class Recognizer:
    """Detect faces, align and crop them as the model was trained, classify their expressions.

    model: "default", "fast", "robust" (shipped), a checkpoint path, an exported ``.onnx`` file (backend="onnx"), an
        (nn.Module, ModelConfig) pair, or a Classifier object.
    detector: "auto" (YuNet when its model file is available, else Haar), "yunet", "haar", "none" (the image
        already is a face crop) or a FaceDetector object; detector_model: the YuNet ONNX file.
    device: "auto", "cpu", "cuda", "mps"; backend: "auto" (ONNX Runtime for shipped models and .onnx files on
        CPU when onnxruntime is installed, else torch), "torch" or "onnx" (never imports torch when given an
        .onnx file or a shipped model).
    min_face: faces smaller than this (pixels, shorter box side) are reported with emotion None.
    crop_margin, tta: override the checkpoint's face-crop margin and test-time augmentation.
    batch_size: faces per forward pass. max_side: images are downscaled to this for detection only (480:
        faces down to ~1/40 of the image's longer side; raise it for small faces in large photos).
    """

    def __init__(self, model: Any = "default", detector: str | FaceDetector = "auto", device: str = "auto",
                 backend: str = "auto", *, detector_model: str | Path | None = None, min_face: int = 20,
                 crop_margin: float | None = None, align: bool = True, tta: str | None = None,
                 batch_size: int = 64, max_side: int | None = DEFAULT_MAX_SIDE, download: bool = True):
        # Checked here, once: a video loop or web handler would otherwise meet them on every frame.
        if min_face < 0 or batch_size < 1 or (max_side is not None and max_side < 0):
            raise FerkitError(f"min_face must be 0 or more, batch_size at least 1 and max_side 0 or more (0 or None: "
                              f"detect at full size); got {min_face}, {batch_size}, {max_side}")
        if crop_margin is not None and crop_margin < 0:
            raise FerkitError(f"crop_margin is the share of the face box added on each side, 0 or more; "
                              f"got {crop_margin}")
        if isinstance(detector, str):
            # Faces down to half the classification threshold are still found, so they can be reported.
            detector = create_detector(detector, model_path=detector_model, min_face=max(8, min_face // 2),
                                       max_side=max_side, download=download)
        self.detector: FaceDetector = detector
        self.classifier: Classifier = load_classifier(model, backend=backend, device=device, tta=tta,
                                                      batch_size=batch_size)
        self.backend: str = getattr(self.classifier, "backend", "custom")
        self.min_face = int(min_face)
        self.align = align
        self.crop_margin = self.classifier.crop_margin if crop_margin is None else float(crop_margin)
        self.labels = self.classifier.labels
        log.debug("detector %s, classifier %s", self.detector_description, self.classifier.description)

    @property
    def detector_name(self) -> str:
        return self.detector.name

    @property
    def detector_description(self) -> str:
        return describe_detector(self.detector)

    def __repr__(self) -> str:
        return (f"Recognizer(detector={self.detector_description!r}, classifier={self.classifier.description!r}, "
                f"crop_margin={self.crop_margin})")

    # -- the API -----------------------------------------------------------------------------------------------

    def predict(self, image: ImageInput, *, color: str = "bgr") -> list[FaceResult]:
        """Faces in one image, left to right. ``color`` says how to read numpy arrays ("bgr" or "rgb")."""
        return self.predict_batch([image], color=color)[0]

    def predict_batch(self, images: Sequence[ImageInput], *, color: str = "bgr") -> list[list[FaceResult]]:
        """Detect in each image, then classify the faces of all images together in batched forward passes.

        Raises DataError for the first unreadable input; to carry on past bad files, decode them yourself
        with ``ferkit.imageio.load_image`` and pass the arrays (with ``color="rgb"``).
        """
        prepared = [_prepare(im, color) for im in images]
        return self._predict_prepared([im for im, _ in prepared], [c for _, c in prepared])

    def detect(self, image: ImageInput, *, color: str = "bgr") -> list[Detection]:
        return self.detector.detect(*_prepare(image, color))

    def classify(self, faces: np.ndarray) -> np.ndarray:
        """Pre-cropped uint8 faces (N x H x W gray or N x H x W x 3 RGB) -> N x num_classes probabilities."""
        return self.classifier.predict_proba(faces)

    def predict_decoded(self, images_rgb: Sequence[np.ndarray]) -> list[list[FaceResult]]:
        """``predict_batch`` for images already decoded to H x W x 3 RGB uint8."""
        return self._predict_prepared(images_rgb, ["rgb"] * len(images_rgb))

    def _predict_prepared(self, images: Sequence[np.ndarray], colors: Sequence[str]) -> list[list[FaceResult]]:
        detections = [self.detector.detect(im, c) for im, c in zip(images, colors)]
        # Crops at the classifier's crop size: a model trained on the centre of each face (face_crop < 1)
        # then sees that centre at its native resolution, as it did in training.
        size = self.classifier.crop_size
        crops: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []  # (image index, face index) of each crop
        for i, (im, c, dets) in enumerate(zip(images, colors, detections)):
            keep = [j for j, d in enumerate(dets) if min(d.box[2], d.box[3]) >= self.min_face]
            if keep:
                faces = crop_faces(im, [dets[j] for j in keep], size, self.crop_margin, self.align)
                crops.append(faces[..., ::-1] if c == "bgr" else faces)  # the classifiers take RGB
                owners += [(i, j) for j in keep]
        probs: list[list[np.ndarray | None]] = [[None] * len(dets) for dets in detections]
        if crops:
            for (i, j), p in zip(owners, self.classifier.predict_proba(np.concatenate(crops))):
                probs[i][j] = p
        return [
            [self._result(d, im.shape, p) for d, p in zip(dets, ps)]
            for im, dets, ps in zip(images, detections, probs)
        ]

    def annotate(self, image: ImageInput, results: Iterable[FaceResult], *, color: str = "bgr") -> np.ndarray:
        """A BGR copy of the image (ready for ``cv2.imwrite`` / ``cv2.imshow``) with boxes, labels and
        probability bars; ``color`` says how to read a numpy ``image``."""
        return annotate(image, results, color=color, labels=self.labels)

    # -- helpers -----------------------------------------------------------------------------------------------

    def _result(self, det: Detection, shape: tuple[int, ...], probs: np.ndarray | None) -> FaceResult:
        h, w = shape[:2]
        x0, y0 = max(0, round(det.box[0])), max(0, round(det.box[1]))
        x1, y1 = min(w, round(det.box[0] + det.box[2])), min(h, round(det.box[1] + det.box[3]))
        landmarks = None
        if det.landmarks is not None:
            landmarks = tuple((float(x), float(y)) for x, y in det.landmarks)
        if probs is None:
            return FaceResult((x0, y0, x1 - x0, y1 - y0), float(det.score), landmarks, None, {})
        pd = {label: float(p) for label, p in zip(self.labels, probs)}
        return FaceResult((x0, y0, x1 - x0, y1 - y0), float(det.score), landmarks,
                          self.labels[int(np.argmax(probs))], pd)


def _prepare(image: ImageInput, color: str) -> tuple[np.ndarray, str]:
    """Decode to RGB, except that OpenCV frames (BGR uint8) go to the detector as they are: converting a
    640 x 480 frame to RGB and back costs more than classifying a face."""
    if (isinstance(image, np.ndarray) and color == "bgr" and image.dtype == np.uint8 and image.ndim == 3
            and image.shape[2] == 3 and image.size and image.flags.c_contiguous):  # empty: load_image refuses it
        return image, "bgr"
    return load_image(image, color=color), "rgb"


# ---------------------------------------------------------------------------------------------------------------
# Drawing

# BGR colours per emotion, chosen to stay distinguishable on photos.
_COLORS: dict[str, tuple[int, int, int]] = {
    "angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160), "happy": (0, 200, 255),
    "neutral": (200, 200, 200), "sad": (200, 120, 40), "surprise": (0, 140, 255), "contempt": (120, 120, 0),
}


def annotate(image: ImageInput, results: Iterable[FaceResult], *, color: str = "bgr",
             labels: Sequence[str] | None = None) -> np.ndarray:
    """Draw each face's box and top emotion, and a bar per class beside the box; returns a BGR array."""
    canvas = np.ascontiguousarray(load_image(image, color=color)[..., ::-1])  # always a fresh copy
    h, w = canvas.shape[:2]
    thick = max(1, round(max(h, w) / 500))
    for r in results:
        x, y, bw, bh = r.box
        c = _COLORS.get(r.emotion or "", (255, 255, 255))
        cv2.rectangle(canvas, (x, y), (x + bw, y + bh), c, thick, cv2.LINE_AA)
        if r.landmarks:
            for lx, ly in r.landmarks:
                cv2.circle(canvas, (round(lx), round(ly)), thick + 1, (0, 255, 0), -1, cv2.LINE_AA)
        scale = float(np.clip(bw / 220, 0.35, 1.2))
        text = f"{r.emotion} {r.probs[r.emotion]:.0%}" if r.emotion else "too small"
        _label(canvas, text, (x, y), scale, c, thick)
        if r.probs:
            _bars(canvas, r, labels or list(r.probs), scale)
    return canvas


def _label(canvas: np.ndarray, text: str, at: tuple[int, int], scale: float, c: tuple[int, int, int],
           thick: int) -> None:
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    x, y = at
    y = y - 4 if y - th - base - 4 >= 0 else y + th + base + 4  # above the box unless it touches the top
    cv2.rectangle(canvas, (x, y - th - base), (x + tw + 4, y + base // 2), c, -1)
    cv2.putText(canvas, text, (x + 2, y - base // 2), font, scale, (0, 0, 0), thick, cv2.LINE_AA)


def _bars(canvas: np.ndarray, r: FaceResult, labels: Sequence[str], scale: float) -> None:
    font, fscale = cv2.FONT_HERSHEY_SIMPLEX, scale * 0.6
    x, y, bw, bh = r.box
    row = max(8, round(bh / max(len(labels), 1) * 0.6))
    name_w = cv2.getTextSize("surprise", font, fscale, 1)[0][0] + 4
    bar_w = max(20, round(bw * 0.6))
    left = x + bw + 6
    if left + name_w + bar_w > canvas.shape[1]:  # no room on the right: draw on the left
        left = max(0, x - 6 - name_w - bar_w)
    for j, label in enumerate(labels):
        p = r.probs.get(label, 0.0)
        top = y + j * row
        cv2.putText(canvas, label, (left, top + row - 2), font, fscale, (255, 255, 255), 2, cv2.LINE_AA)
        cv2.putText(canvas, label, (left, top + row - 2), font, fscale, (0, 0, 0), 1, cv2.LINE_AA)
        x0 = left + name_w
        cv2.rectangle(canvas, (x0, top + 2), (x0 + bar_w, top + row - 2), (60, 60, 60), -1)
        cv2.rectangle(canvas, (x0, top + 2), (x0 + round(bar_w * p), top + row - 2),
                      _COLORS.get(label, (255, 255, 255)), -1)
