"""Preprocessing and test-time views: what the model sees of a face, in training and at inference alike."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ferkit.models.checkpoint import ModelConfig
from ferkit.transforms.views import tta_views
from ferkit.transforms.preprocess import centre_crop, faces_to_tensor, to_input


def test_face_crop_takes_the_native_centre_without_resampling():
    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), np.uint8)
    config = ModelConfig(arch="fernet", input_size=40, face_crop=40 / 48, mean=[0.0], std=[1 / 255])
    x = faces_to_tensor(faces, config)
    assert x.shape == (3, 1, 40, 40)
    assert torch.equal(x[:, 0], torch.as_tensor(faces[:, 4:44, 4:44]).float())


def test_crop_size_is_the_side_whose_centre_is_the_input():
    assert ModelConfig(arch="fernet", input_size=40, face_crop=40 / 48).crop_size == 48
    assert ModelConfig(arch="fernet", input_size=40).crop_size == 40
    config = ModelConfig(arch="fernet", input_size=40, face_crop=0.8333333)
    assert centre_crop(torch.zeros(1, 1, config.crop_size, config.crop_size), config.face_crop).shape[-1] == 40


def test_whole_face_is_resized_when_face_crop_is_one():
    x = torch.arange(48.0).repeat(48, 1)[None, None]  # a horizontal ramp
    out = to_input(x, ModelConfig(arch="fernet", input_size=24))
    assert out.shape[-1] == 24 and out[0, 0, 0, 0] < 2 and out[0, 0, 0, -1] > 45  # both edges kept


def test_flip_shift_views_are_flips_and_one_step_translations():
    x = torch.randn(2, 1, 40, 40)
    views = tta_views(x, "flip_shift")
    assert len(views) == 10 and all(v.shape == x.shape for v in views)
    assert torch.equal(views[0], x) and torch.equal(views[1], x.flip(-1))
    d = 2  # 5% of 40 px
    down, up, right, left = views[2], views[4], views[6], views[8]  # where the face moves
    assert torch.equal(down[..., d:, :], x[..., :-d, :])
    assert torch.equal(down[..., :d, :], x[..., :1, :].expand(-1, -1, d, -1))  # edge rows repeated
    assert torch.equal(up[..., :-d, :], x[..., d:, :])
    assert torch.equal(right[..., :, d:], x[..., :, :-d]) and torch.equal(left[..., :, :-d], x[..., :, d:])
    for shifted, mirrored in zip(views[2::2], views[3::2]):
        assert torch.equal(mirrored, shifted.flip(-1))


@pytest.mark.parametrize("mode", ["bogus", ""])
def test_unknown_tta_modes_are_refused(mode):
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match="unknown TTA mode .*choose one of none, flip, flip_shift, flip_crop"):
        tta_views(torch.zeros(1, 1, 8, 8), mode)


@pytest.mark.parametrize("share", [0.0, 1.2])
def test_training_refuses_a_face_crop_outside_zero_to_one(share):
    from ferkit.errors import FerkitError
    from ferkit.training.loop import TrainConfig, check_config

    with pytest.raises(FerkitError, match="--face-crop"):
        check_config(TrainConfig(face_crop=share))
