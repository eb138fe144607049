"""Occlusion masks: exact geometry, fill values, landmark masks and random occlusion statistics."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ferkit.models.checkpoint import ModelConfig
from ferkit.errors import FerkitError
from ferkit.transforms.occlusion import (
    MASKS, apply_mask, black_fill, landmark_region, mouth_from_landmarks, random_occlusion, random_regions, region,
)
from ferkit.transforms.preprocess import normalize

SIZES = [(48, 48), (7, 9), (9, 7), (5, 5), (1, 3)]


def expected_hidden(name: str, h: int, w: int) -> np.ndarray:
    """The specification, written out pixel by pixel."""
    r = np.arange(h)[:, None] + np.zeros((1, w), int)
    c = np.arange(w)[None, :] + np.zeros((h, 1), int)
    return {
        "full": np.zeros((h, w), bool),
        "upper": r < h // 2,
        "lower": r >= h // 2,
        "mouth": r >= h // 2,
        "forehead": r < h // 4,
        "eyes": (r >= h // 4) & (r < h // 2),
        "left": c < w // 2,
        "right": c >= w // 2,
    }[name]


@pytest.mark.parametrize("h,w", SIZES)
@pytest.mark.parametrize("name", MASKS)
def test_each_mask_hides_exactly_its_region(name, h, w):
    x = torch.randint(1, 256, (3, 2, h, w), dtype=torch.uint8)  # never 0, so every 0 is a hidden pixel
    out = apply_mask(x, name)
    want = torch.from_numpy(expected_hidden(name, h, w))
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out == 0, want.expand_as(out))
    assert torch.equal(out[:, :, ~want], x[:, :, ~want])  # visible pixels untouched
    assert torch.equal(region(name, h, w), want)


@pytest.mark.parametrize("h,w", SIZES)
def test_halves_and_quarters_partition_the_image(h, w):
    up, low = region("upper", h, w), region("lower", h, w)
    left, right = region("left", h, w), region("right", h, w)
    assert not (up & low).any() and (up | low).all()
    assert not (left & right).any() and (left | right).all()
    assert torch.equal(region("forehead", h, w) | region("eyes", h, w), up)
    assert torch.equal(region("mouth", h, w), low)


def test_left_is_the_viewers_left():
    x = torch.full((1, 1, 4, 4), 200, dtype=torch.uint8)
    assert apply_mask(x, "left")[0, 0, :, 0].eq(0).all()  # first column as displayed
    assert apply_mask(x, "right")[0, 0, :, -1].eq(0).all()


def test_masks_are_pure_and_keep_dtype_and_device():
    for dtype in (torch.float16, torch.float32, torch.float64):
        x = torch.rand(2, 3, 8, 8, dtype=dtype) * 255
        before = x.clone()
        out = apply_mask(x, "upper")
        assert out.dtype == dtype and torch.equal(x, before)
    assert apply_mask(x, "full") is not x


def test_per_channel_fill_and_normalised_black():
    config = ModelConfig("baseline_cnn", in_chans=3, mean=[0.4, 0.5, 0.6], std=[0.2, 0.25, 0.3])
    pixels = torch.rand(2, 3, 10, 10) * 255
    # Masking before normalising with fill 0 == masking after normalising with the normalised black.
    a = normalize(apply_mask(pixels, "eyes"), config)
    b = apply_mask(normalize(pixels, config), "eyes", fill=black_fill(config))
    torch.testing.assert_close(a, b)


def test_unknown_mask_lists_valid_names():
    with pytest.raises(FerkitError, match="valid masks: full, upper, lower, left, right, forehead, eyes, mouth"):
        apply_mask(torch.zeros(1, 1, 4, 4), "chin")


# --------------------------------------------------------------------------------------- landmarks
# A frontal face in a 48 x 48 crop: eyes, nose tip, mouth corners (x, y).
FACE = torch.tensor([[16.0, 18.0], [32.0, 18.0], [24.0, 28.0], [18.0, 36.0], [30.0, 36.0]])


def _at(mask: torch.Tensor, point: torch.Tensor) -> bool:
    return bool(mask[int(point[1]), int(point[0])])


def _rotate(points: torch.Tensor, degrees: float, centre=(24.0, 24.0)) -> torch.Tensor:
    a = math.radians(degrees)
    rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = torch.tensor(centre)
    return (points - c) @ rot.T + c


def test_landmark_eyes_and_mouth_cover_the_right_features():
    eyes = landmark_region("eyes", FACE[None], 48, 48)[0]
    mouth = landmark_region("mouth", FACE[None], 48, 48)[0]
    assert _at(eyes, FACE[0]) and _at(eyes, FACE[1])
    assert _at(eyes, FACE[0] - torch.tensor([0, 7.0]))  # brow, ~0.45 iod above the eye
    assert not _at(eyes, FACE[2]) and not _at(eyes, FACE[3])
    assert _at(mouth, FACE[3]) and _at(mouth, FACE[4]) and _at(mouth, FACE[2])  # nose tip and mouth
    assert not _at(mouth, FACE[0]) and not mouth[:20].any()
    assert not (eyes & mouth).any()


def test_landmark_masks_follow_the_face():
    batch = torch.stack([FACE, FACE + torch.tensor([5.0, 3.0]), _rotate(FACE, 25), FACE[[1, 0, 2, 4, 3]]])
    eyes = landmark_region("eyes", batch, 48, 48)
    mouth = landmark_region("mouth", batch, 48, 48)
    assert torch.equal(eyes[1][3:, 5:], eyes[0][:-3, :-5])  # shifted face, shifted mask
    assert torch.equal(eyes[3], eyes[0]) and torch.equal(mouth[3], mouth[0])  # landmark order of the eyes
    rolled = _rotate(FACE, 25)
    for k in (0, 1):
        assert _at(eyes[2], rolled[k])
    assert _at(mouth[2], rolled[3]) and _at(mouth[2], rolled[4]) and not _at(mouth[2], rolled[0])


def test_apply_mask_uses_landmarks_when_given():
    x = torch.full((2, 1, 48, 48), 255, dtype=torch.uint8)
    lm = torch.stack([FACE, FACE + torch.tensor([0.0, 6.0])])
    out = apply_mask(x, "mouth", landmarks=lm)
    assert torch.equal(out, mouth_from_landmarks(x, lm))
    assert not torch.equal(out[0], out[1])  # the lower face moved down, so did its mask
    assert torch.equal(apply_mask(x, "upper", landmarks=lm), apply_mask(x, "upper"))  # no landmark variant
    with pytest.raises(FerkitError, match="N x 5 x 2"):
        apply_mask(x, "eyes", landmarks=torch.zeros(2, 4, 2))


# ----------------------------------------------------------------------------------------- random
def _kind(mask: np.ndarray) -> str:
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    for name in ("upper", "lower", "left", "right"):
        if np.array_equal(mask, expected_hidden(name, h, w)):
            return "half"
    if len(cols) == w:
        return "band"
    assert len(rows) == len(cols)
    return "patch"


def test_random_occlusion_statistics():
    n, h, w = 3000, 48, 48
    g = torch.Generator().manual_seed(0)
    hide = random_regions(n, h, w, p=0.5, generator=g)[:, 0].numpy()
    occluded = hide.any((1, 2))
    assert abs(occluded.mean() - 0.5) < 0.03
    kinds = [_kind(m) for m in hide[occluded]]
    for kind in ("half", "band", "patch"):
        assert abs(kinds.count(kind) / len(kinds) - 1 / 3) < 0.04, kind
    area = hide[occluded].mean((1, 2))
    # Every kind hides between 1/16 (smallest patch) and 1/2 (half or widest band) of the image.
    assert area.min() >= 1 / 16 - 1e-9 and area.max() <= 0.5 + 1e-9
    # Each mask is one axis-aligned rectangle.
    for m in hide[occluded][:200]:
        rows, cols = np.flatnonzero(m.any(1)), np.flatnonzero(m.any(0))
        assert m.sum() == len(rows) * len(cols)


def test_random_occlusion_is_reproducible_and_respects_p():
    x = torch.randint(1, 256, (64, 1, 20, 24), dtype=torch.uint8)
    a = random_occlusion(x, 0.7, torch.Generator().manual_seed(3))
    b = random_occlusion(x, 0.7, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert torch.equal(random_occlusion(x, 0.0), x)
    assert (random_occlusion(x, 1.0).eq(0).flatten(1).any(1)).all()
    masked = random_occlusion(x, 1.0, torch.Generator().manual_seed(3))
    y = random_occlusion(x.float(), 1.0, torch.Generator().manual_seed(3), fill=torch.tensor([-1.0]))
    assert torch.equal(y == -1, masked == 0)  # a custom fill lands exactly where pixels hide
