"""crop_faces: all the faces of one image as one uint8 array (crop_matrix, crop_face and eye_angle are specified
in test_detectors.py)."""
from __future__ import annotations

import numpy as np
import pytest

from ferkit.inference.align import crop_face, crop_faces
from ferkit.inference.detectors import Detection

from synthetic import hopper_detection

DETECTIONS = [
    hopper_detection(),  # with landmarks: rotated upright
    Detection((20.0, 30.0, 60.0, 80.0), 0.8),  # without: axis-aligned
    Detection((-40.0, 500.0, 120.0, 120.0), 0.7),  # cut by the border
]


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (600, 512, 3), np.uint8)


@pytest.mark.parametrize("gray", [False, True])
def test_one_crop_per_detection_in_the_image_channels(image, gray):
    src = image[..., 0].copy() if gray else image
    crops = crop_faces(src, DETECTIONS, 40, margin=0.1)
    assert crops.shape == ((3, 40, 40) if gray else (3, 40, 40, 3)) and crops.dtype == np.uint8
    for crop, det in zip(crops, DETECTIONS):
        assert np.array_equal(crop, crop_face(src, det, 40, 0.1))
    assert len({crop.tobytes() for crop in crops}) == 3


def test_align_false_reaches_every_crop(image):
    aligned, upright = crop_faces(image, DETECTIONS[:1], 48), crop_faces(image, DETECTIONS[:1], 48, align=False)
    assert np.array_equal(upright[0], crop_face(image, DETECTIONS[0], 48, align=False))
    assert not np.array_equal(aligned, upright)


@pytest.mark.parametrize("shape, expected", [((50, 60), (0, 24, 24)), ((50, 60, 3), (0, 24, 24, 3))])
def test_no_detections_give_an_empty_batch_of_the_right_shape(shape, expected):
    crops = crop_faces(np.zeros(shape, np.uint8), [], 24)
    assert crops.shape == expected and crops.dtype == np.uint8
