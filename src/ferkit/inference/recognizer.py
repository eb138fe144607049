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
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ferkit.errors import FerkitError
from ferkit.inference.align import crop_faces
from ferkit.inference.classifier import Classifier, load_classifier
from ferkit.inference.detectors import DEFAULT_MAX_SIDE, Detection, FaceDetector, create_detector, describe_detector
from ferkit.inference.drawing import annotate
from ferkit.inference.imageio import ImageInput, load_image
from ferkit.inference.results import FaceResult

log = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------------------------
# The Recognizer


class Recognizer:
    """Detect faces, align and crop them as the model was trained, classify their expressions.

    model: "default", "fast", "robust" (shipped), a checkpoint path, an exported ``.onnx`` file (backend="onnx"), an
        (nn.Module, ModelConfig) pair, or a Classifier object.
    detector: "auto" (YuNet, fetched once into the cache when online unless ``download=False`` or
        FERKIT_OFFLINE=1; else Haar with one warning), "yunet", "haar", "none" (the image
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
        with ``ferkit.inference.imageio.load_image`` and pass the arrays (with ``color="rgb"``).
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

    def predict_with_crops(self, image_rgb: np.ndarray) -> list[tuple[FaceResult, Detection, np.ndarray | None]]:
        """``predict_decoded`` for one H x W x 3 RGB image, each face with its detection and the crop the classifier
        saw (RGB, ``classifier.crop_size`` square; None under ``min_face``): for tools that study what the model
        looked at, such as ``ferkit.analysis.explain_image``."""
        return self._predict_detailed([image_rgb], ["rgb"])[0]

    def _predict_prepared(self, images: Sequence[np.ndarray], colors: Sequence[str]) -> list[list[FaceResult]]:
        return [[face for face, _, _ in faces] for faces in self._predict_detailed(images, colors)]

    def classify_detections(self, images: Sequence[np.ndarray], colors: Sequence[str],
                            detections: Sequence[Sequence[Detection]]
                            ) -> tuple[list[list[np.ndarray | None]], list[list[np.ndarray | None]]]:
        """Probabilities and the RGB crop classified for each detection of each image (None for faces under
        ``min_face``), every face of every image in one batched pass. The video pipeline calls this with the
        tracker's boxes; ``predict`` with the detector's."""
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
        seen: list[list[np.ndarray | None]] = [[None] * len(dets) for dets in detections]
        if crops:
            batch = np.concatenate(crops)
            for (i, j), crop, p in zip(owners, batch, self.classifier.predict_proba(batch)):
                probs[i][j], seen[i][j] = p, crop
        return probs, seen

    def _predict_detailed(self, images: Sequence[np.ndarray], colors: Sequence[str]
                          ) -> list[list[tuple[FaceResult, Detection, np.ndarray | None]]]:
        detections = [self.detector.detect(im, c) for im, c in zip(images, colors)]
        probs, seen = self.classify_detections(images, colors, detections)
        return [
            [(self._result(d, im.shape, p), d, crop) for d, p, crop in zip(dets, ps, cs)]
            for im, dets, ps, cs in zip(images, detections, probs, seen)
        ]

    def annotate(self, image: ImageInput, results: Iterable[FaceResult], *, color: str = "bgr") -> np.ndarray:
        """A BGR copy of the image (ready for ``cv2.imwrite`` / ``cv2.imshow``) with boxes, labels and
        probability bars; ``color`` says how to read a numpy ``image``."""
        return annotate(image, results, color=color, labels=self.labels)

    def stream(self, source: Any, **options: Any):
        """Per-frame results of a video file, folder of frames, camera index or stream URL: an iterator of
        ``ferkit.video.VideoFrame`` (frame index, time, faces with track ids and smoothed emotions). Options
        (``detect_every``, ``smooth``, ``max_faces``, ...) as ``ferkit.video.VideoStream``; for speed, build the
        Recognizer with ``tta="flip"`` (``ferkit.video.video_recognizer`` does)."""
        from ferkit.video.pipeline import stream

        return stream(self, source, **options)

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
