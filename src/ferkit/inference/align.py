"""Face alignment and cropping: the affine map from a detection (box, eye landmarks) to an upright square crop."""
from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

from ferkit.inference.detectors import Detection


def eye_angle(landmarks: np.ndarray | None) -> float:
    """Roll of the face in radians: the angle of the line from the image-left eye to the image-right eye."""
    if landmarks is None:
        return 0.0
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    return math.atan2(float(ry - ly), float(rx - lx))


def crop_matrix(det: Detection, size: int, margin: float, align: bool = True) -> np.ndarray:
    """The 2 x 3 affine map from image pixels to a ``size`` x ``size`` face crop.

    The crop is a square of side ``max(w, h) * (1 + 2 * margin)`` centred on the box and, when ``align`` and
    landmarks exist, rotated about the box centre so the eyes are level. ``max(w, h)``: YuNet's boxes are
    taller than wide (brow to chin) and Haar's are square, and their longer sides agree within a few percent,
    so one margin suits both detectors.
    """
    x, y, w, h = det.box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    k = size / side
    theta = eye_angle(det.landmarks) if align else 0.0
    c, s = math.cos(theta), math.sin(theta)
    # out = k * R(-theta) @ (p - centre) + centre_out, in OpenCV's pixel-index coordinates: boxes are in edge
    # coordinates (a pixel spans [i, i + 1)), so both centres move by half a pixel.
    rot = np.array([[c, s], [-s, c]]) * k
    half = (size - 1) / 2.0
    t = np.array([half, half]) - rot @ np.array([cx - 0.5, cy - 0.5])
    return np.hstack([rot, t[:, None]])


def crop_face(image: np.ndarray, det: Detection, size: int, margin: float = 0.0, align: bool = True) -> np.ndarray:
    """A ``size`` x ``size`` face crop (same channels as ``image``), rotated upright and antialiased.

    Downscaling by a large factor in one warp would alias, so large faces are first area-resampled from a
    region just around the crop, then rotated at about the output scale.
    """
    m = crop_matrix(det, size, margin, align)
    k = float(np.hypot(m[0, 0], m[0, 1]))
    if k >= 0.5:
        return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # Region of the source covered by the rotated crop square (its bounding box, one pixel of slack).
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], dtype=np.float64) - [0.5, 0.5, 0]
    src = corners @ inv.T
    H, W = image.shape[:2]
    x0, y0 = np.floor(src.min(0)).astype(int) - 1
    x1, y1 = np.ceil(src.max(0)).astype(int) + 2
    x0c, y0c, x1c, y1c = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if x1c <= x0c or y1c <= y0c:  # the face lies entirely outside the image: nothing better than a warp
        return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    roi = image[y0c:y1c, x0c:x1c]
    rw, rh = max(1, round(roi.shape[1] * k)), max(1, round(roi.shape[0] * k))
    small = cv2.resize(roi, (rw, rh), interpolation=cv2.INTER_AREA)
    kx, ky = rw / roi.shape[1], rh / roi.shape[0]
    # Compose: small-pixel -> source-pixel (undo the area resize, pixel-centre aware) -> crop pixel.
    to_src = np.array([[1 / kx, 0, x0c + 0.5 / kx - 0.5], [0, 1 / ky, y0c + 0.5 / ky - 0.5], [0, 0, 1]])
    m_small = m @ to_src
    out = cv2.warpAffine(small, m_small, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def crop_faces(image: np.ndarray, detections: Sequence[Detection], size: int, margin: float = 0.0,
               align: bool = True) -> np.ndarray:
    """All faces of one image as an N x size x size [x C] uint8 array."""
    shape = (len(detections), size, size) + image.shape[2:]
    out = np.empty(shape, dtype=np.uint8)
    for i, det in enumerate(detections):
        out[i] = crop_face(image, det, size, margin, align)
    return out
