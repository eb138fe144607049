"""What a model sees of a face crop: the centre window, the crop side, and the test-time augmentation views."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ferkit.errors import FerkitError
from ferkit.transforms.views import FIXED_TTA_MODES, TTA_MODES, centre_window, check_tta, crop_side, tta_views


def batch(size: int, n: int = 2, c: int = 1, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((n, c, size, size)).astype(np.float32))


def shifted(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = x[i + dy, j + dx], indices clamped to the image (edge pixels repeated)."""
    rows = np.clip(np.arange(x.shape[-2]) + dy, 0, x.shape[-2] - 1)
    cols = np.clip(np.arange(x.shape[-1]) + dx, 0, x.shape[-1] - 1)
    return x[..., rows, :][..., cols]


def test_importing_the_views_does_not_import_torch():
    # The ONNX backend takes the window and the mode names from here and must start without torch.
    code = "import sys, ferkit.transforms.views; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_check_tta_returns_a_known_mode(mode):
    assert check_tta(mode) == mode


def test_check_tta_names_the_setting_and_lists_the_modes():
    with pytest.raises(FerkitError, match=r"^unknown TTA mode 'mirror'; choose one of none, flip, flip_shift, "
                                          r"flip_crop, adaptive$"):
        check_tta("mirror")
    with pytest.raises(FerkitError, match=r"^unknown --tta 'Flip';"):
        check_tta("Flip", "--tta")


@pytest.mark.parametrize("height, width, share, rows, cols", [
    (48, 48, 1.0, (0, 48), (0, 48)),
    (48, 48, 1.2, (0, 48), (0, 48)),        # more than the whole image is the whole image
    (48, 48, 40 / 48, (4, 44), (4, 44)),    # FER2013's classic 40-of-48 crop
    (10, 7, 0.5, (2, 7), (1, 5)),           # 5 x round(3.5) = 4, odd margins rounded down on top/left
    (5, 5, 0.01, (2, 3), (2, 3)),           # never less than one pixel
])
def test_centre_window(height, width, share, rows, cols):
    r, c = centre_window(height, width, share)
    assert (r.start, r.stop) == rows and (c.start, c.stop) == cols


@pytest.mark.parametrize("input_size, face_crop, side", [(40, 40 / 48, 48), (48, 1.0, 48), (48, 0.8, 60),
                                                         (44, 0.9, 49), (48, 1.5, 48)])
def test_crop_side_is_the_crop_whose_centre_window_is_the_input(input_size, face_crop, side):
    assert crop_side(input_size, face_crop) == side
    if face_crop <= 1.0:
        r, c = centre_window(side, side, face_crop)
        assert r.stop - r.start == input_size and c.stop - c.start == input_size


@pytest.mark.parametrize("mode, count", [("none", 1), ("flip", 2), ("flip_shift", 10), ("flip_crop", 10)])
def test_each_mode_makes_its_number_of_views_and_view_0_is_the_input(mode, count):
    x = batch(24, n=3, c=3)
    views = tta_views(x, mode)
    assert len(views) == count
    assert views[0] is x
    assert all(v.shape == x.shape and v.dtype == x.dtype for v in views)


def test_flip_is_an_exact_mirror():
    x = batch(16)
    _, flipped = tta_views(x, "flip")
    assert torch.equal(flipped, x[..., torch.arange(15, -1, -1)])


@pytest.mark.parametrize("size, d", [(10, 1), (40, 2), (48, 2), (64, 3)])
def test_flip_shift_moves_the_face_by_a_twentieth_of_its_side_with_edges_repeated(size, d):
    x = batch(size)
    views = tta_views(x, "flip_shift")
    assert torch.equal(views[1], x.flip(-1))
    # Pairs (shift, its mirror) for the face moved down, up, right and left by d pixels.
    for k, (dy, dx) in enumerate(((-d, 0), (d, 0), (0, -d), (0, d))):
        view, mirror = views[2 + 2 * k], views[3 + 2 * k]
        assert torch.equal(view, shifted(x, dy, dx)), (dy, dx)
        assert torch.equal(mirror, view.flip(-1))
    # Moved, not resampled: the first rows of the face moved down are copies of its top row.
    assert torch.equal(views[2][..., :d + 1, :], x[..., :1, :].expand(-1, -1, d + 1, -1))


def test_flip_crop_resizes_each_corner_back():
    size, crop = 48, 42  # 7/8 of the side
    x = batch(size)
    views = tta_views(x, "flip_crop")
    corners = [(0, 0), (0, size - crop), (size - crop, 0), (size - crop, size - crop)]
    for k, (top, left) in enumerate(corners):
        expected = F.interpolate(x[..., top:top + crop, left:left + crop], size=(size, size), mode="bilinear",
                                 align_corners=False)
        assert torch.allclose(views[2 + 2 * k], expected, atol=1e-6)
        assert torch.equal(views[3 + 2 * k], views[2 + 2 * k].flip(-1))


def test_flip_crop_corners_leave_out_the_opposite_corner():
    size = 48
    x = torch.zeros(1, 1, size, size)
    x[..., -3:, -3:] = 1.0  # a mark in the bottom-right 3 x 3 pixels, outside the top-left 42 x 42 corner
    top_left, _, top_right, _, bottom_left, _, bottom_right, _ = tta_views(x, "flip_crop")[2:]
    assert top_left.abs().max() == 0 and top_right.abs().max() == 0 and bottom_left.abs().max() == 0
    assert bottom_right[..., -1, -1] > 0.9


@pytest.mark.parametrize("mode", FIXED_TTA_MODES)
def test_a_static_size_gives_the_views_an_inferred_one_does(mode):
    # Export passes the side as an int because tracing turns x.shape[-1] into a tensor.
    x = batch(40, c=3)
    for a, b in zip(tta_views(x, mode), tta_views(x, mode, size=40), strict=True):
        assert torch.equal(a, b)


def test_tta_views_refuses_an_unknown_mode():
    with pytest.raises(FerkitError, match="unknown TTA mode 'shift'"):
        tta_views(batch(8), "shift")


def test_adaptive_tta_has_no_fixed_views():
    with pytest.raises(FerkitError, match="adaptive TTA has no fixed views"):
        tta_views(batch(16), "adaptive")


def test_unsure_is_a_top_class_below_the_threshold_in_numpy_and_torch():
    from ferkit.transforms.views import ADAPTIVE_CONFIDENCE, unsure

    # Softmax top classes 0.9, 0.5 + a hair, 0.5 - a hair, 1/7 (uniform).
    logits = np.log(np.array([[0.9, 0.1, 0, 0], [0.5001, 0.4999, 0, 0], [0.4999, 0.3, 0.2001, 0],
                              [1, 1, 1, 1]]) + 1e-12)
    assert ADAPTIVE_CONFIDENCE == 0.5
    assert unsure(logits).tolist() == [False, False, True, True]
    assert unsure(torch.from_numpy(logits)).tolist() == [False, False, True, True]
    assert unsure(logits, threshold=0.95).tolist() == [True, True, True, True]


@pytest.mark.parametrize("mode", FIXED_TTA_MODES)
def test_view_counts_are_what_both_view_makers_make(mode):
    from ferkit.inference.onnx_backend import host_views
    from ferkit.transforms.views import VIEW_COUNTS

    assert len(tta_views(batch(20), mode)) == VIEW_COUNTS[mode]
    assert len(host_views(np.zeros((2, 20, 20, 3), np.float32), mode)) == VIEW_COUNTS[mode]


def test_adaptive_first_stage_views_are_the_second_stages_first_views():
    # Both backends compute only the second stage's views after ADAPTIVE_FIRST_VIEWS and reuse the first stage's.
    from ferkit.inference.onnx_backend import host_views
    from ferkit.transforms.views import ADAPTIVE_FIRST_VIEWS, ADAPTIVE_STAGES

    first, second = ADAPTIVE_STAGES
    x = batch(20, c=3)
    a, b = tta_views(x, first), tta_views(x, second)
    assert len(a) == ADAPTIVE_FIRST_VIEWS < len(b)
    assert all(torch.equal(u, v) for u, v in zip(a, b[:ADAPTIVE_FIRST_VIEWS]))
    h = x.permute(0, 2, 3, 1).numpy()  # the ONNX backend's N x S x S x C layout
    ha, hb = host_views(h, first), host_views(h, second)
    assert len(ha) == ADAPTIVE_FIRST_VIEWS
    assert all(np.array_equal(u, v) for u, v in zip(ha, hb[:ADAPTIVE_FIRST_VIEWS]))
