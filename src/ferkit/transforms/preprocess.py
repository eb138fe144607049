"""From uint8 face crops to the model's input tensor, driven by the checkpoint's ModelConfig.

Faces arrive as uint8 arrays N x H x W (grayscale) or N x H x W x 3 (RGB). Training, evaluation, the face
pipeline and explanations all go through ``faces_to_tensor`` so a model always sees what it was trained on.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ferkit.models.checkpoint import ModelConfig
from ferkit.transforms.views import centre_window

# ITU-R BT.601 luma, the same weights OpenCV and Pillow use for RGB -> gray.
_LUMA = torch.tensor([0.299, 0.587, 0.114])


def uint8_to_nchw(faces: np.ndarray | torch.Tensor) -> torch.Tensor:
    """N x H x W or N x H x W x C uint8 -> N x C x H x W uint8 tensor (no copy where possible)."""
    if isinstance(faces, np.ndarray) and not faces.flags.writeable:
        faces = faces.copy()  # torch cannot share memory with read-only arrays (e.g. from Pillow)
    t = torch.as_tensor(faces)
    if t.ndim == 2:
        t = t[None]
    if t.ndim == 3:
        return t[:, None]
    if t.ndim == 4:
        return t.permute(0, 3, 1, 2)
    raise ValueError(f"expected faces as N x H x W or N x H x W x C, got shape {tuple(t.shape)}")


def match_channels(x: torch.Tensor, in_chans: int) -> torch.Tensor:
    """Convert a float N x C x H x W batch to ``in_chans`` channels (RGB -> gray by luma, gray -> RGB by copy)."""
    c = x.shape[1]
    if c == in_chans:
        return x
    if c == 3 and in_chans == 1:
        return (x * _LUMA.to(x)[None, :, None, None]).sum(1, keepdim=True)
    if c == 1:
        return x.expand(-1, in_chans, -1, -1)
    raise ValueError(f"cannot convert {c}-channel images to {in_chans} channels")


def _pixel_stats(x: torch.Tensor, config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The config's per-channel mean and std in [0, 255] units, shaped to broadcast over ``x``."""
    mean = torch.tensor(config.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) * 255.0
    std = torch.tensor(config.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) * 255.0
    return mean, std


def normalize(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Float batch in [0, 255] -> the model's normalised input."""
    mean, std = _pixel_stats(x, config)
    return (x - mean) / std


def denormalize(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """The inverse of :func:`normalize`: a model's normalised input -> float batch in [0, 255]."""
    mean, std = _pixel_stats(x, config)
    return x * std + mean


def faces_to_tensor(faces: np.ndarray | torch.Tensor, config: ModelConfig,
                    device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 faces (any size, gray or RGB) -> normalised float N x C x S x S on ``device``."""
    x = uint8_to_nchw(faces).to(device=device, dtype=torch.float32)
    x = match_channels(x, config.in_chans)
    return normalize(to_input(x, config), config).contiguous(memory_format=torch.channels_last)


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square resize with antialiasing; training and inference both use this, so they see the same pixels."""
    if x.shape[-2:] == (size, size):
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def centre_crop(x: torch.Tensor, share: float) -> torch.Tensor:
    """The centre ``share`` of each image's side (``ferkit.transforms.views.centre_window``)."""
    rows, cols = centre_window(x.shape[-2], x.shape[-1], share)
    return x[..., rows, cols]


def to_input(x: torch.Tensor, config: ModelConfig) -> torch.Tensor:
    """Float face batch in pixel units -> the model's input size: centre crop (``face_crop``), then resize."""
    return resize(centre_crop(x, config.face_crop), config.input_size)
