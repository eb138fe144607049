"""Batched training augmentation as tensor operations: the same code on CPU and GPU.

All functions take float images N x C x H x W in pixel units [0, 255] (before normalisation) and a
``torch.Generator`` so a run is reproducible. Geometric jitter (flip, rotation, shift, zoom, shear, crop
offsets) is folded into one affine matrix per image and applied with a single ``grid_sample`` call.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    hflip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # max rotation, degrees (uniform in +-rotate)
    shift: float = 0.1  # max translation, fraction of the side
    zoom: float = 0.1  # scale uniform in [1 - zoom, 1 + zoom]; > 1 zooms in
    shear: float = 0.0  # max shear, degrees
    erase: float = 0.0  # probability of random erasing per image
    erase_area: tuple[float, float] = (0.02, 0.2)  # erased fraction of the image
    padding_mode: str = "border"  # how grid_sample fills outside the face: border repeats edge pixels

    def any_geometric(self) -> bool:
        return bool(self.hflip or self.rotate or self.shift or self.zoom or self.shear)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device) -> torch.Tensor:
    # Draws come from a CPU generator (one seed serves any device) and then move to the batch's device.
    return (torch.rand(n, generator=gen) * (high - low) + low).to(device)


def random_affine(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """Flip, rotate, shift, zoom and shear every image of the batch independently, in one resampling."""
    n, dev = x.shape[0], x.device
    angle = _uniform(n, -cfg.rotate, cfg.rotate, gen, dev) * (math.pi / 180)
    shear = _uniform(n, -cfg.shear, cfg.shear, gen, dev) * (math.pi / 180)
    scale = _uniform(n, 1 - cfg.zoom, 1 + cfg.zoom, gen, dev)
    flip = torch.where(torch.rand(n, generator=gen) < cfg.hflip, -1.0, 1.0).to(dev)
    # affine_grid maps output coordinates to input coordinates in [-1, 1]: the inverse of the image motion,
    # so zooming in by s samples a region 1/s as large.
    cos, sin, tan = torch.cos(angle), torch.sin(angle), torch.tan(shear)
    inv_s = 1.0 / scale
    theta = torch.zeros(n, 2, 3, device=dev)
    theta[:, 0, 0] = (cos - sin * tan) * inv_s * flip
    theta[:, 0, 1] = (-sin) * inv_s
    theta[:, 1, 0] = (sin + cos * tan) * inv_s * flip
    theta[:, 1, 1] = cos * inv_s
    theta[:, 0, 2] = _uniform(n, -2 * cfg.shift, 2 * cfg.shift, gen, dev)  # [-1, 1] spans 2 units
    theta[:, 1, 2] = _uniform(n, -2 * cfg.shift, 2 * cfg.shift, gen, dev)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode=cfg.padding_mode, align_corners=False)


def random_erase(x: torch.Tensor, p: float, area: tuple[float, float], fill: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Random erasing (Zhong et al., 2020): a rectangle of random area and aspect per image, set to ``fill``."""
    n, _, h, w = x.shape
    dev = x.device
    frac = _uniform(n, area[0], area[1], gen, dev)
    log_aspect = _uniform(n, math.log(0.3), math.log(3.3), gen, dev)
    eh = (torch.sqrt(frac * torch.exp(log_aspect)) * h).clamp(1, h)
    ew = (torch.sqrt(frac / torch.exp(log_aspect)) * w).clamp(1, w)
    top = torch.rand(n, generator=gen).to(dev) * (h - eh)
    left = torch.rand(n, generator=gen).to(dev) * (w - ew)
    on = torch.rand(n, generator=gen).to(dev) < p
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = ((rows >= top.view(n, 1, 1)) & (rows < (top + eh).view(n, 1, 1))
           & (cols >= left.view(n, 1, 1)) & (cols < (left + ew).view(n, 1, 1)) & on.view(n, 1, 1))
    return x.masked_fill(box[:, None], fill)


def augment(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator, fill: float = 0.0) -> torch.Tensor:
    """The full training augmentation of a pixel-unit batch."""
    if cfg.any_geometric():
        x = random_affine(x, cfg, gen)
    if cfg.erase > 0:
        x = random_erase(x, cfg.erase, cfg.erase_area, fill, gen)
    return x


def mix_batch(x: torch.Tensor, targets: torch.Tensor, mixup: float, cutmix: float, prob: float,
              gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup (Zhang et al., 2018) or CutMix (Yun et al., 2019) on a batch with soft targets N x K.

    With probability ``prob`` the batch is mixed with a shuffled copy of itself; when both are enabled
    each batch picks one of them at random.
    """
    if (mixup <= 0 and cutmix <= 0) or torch.rand(1, generator=gen).item() >= prob:
        return x, targets
    use_cutmix = cutmix > 0 and (mixup <= 0 or torch.rand(1, generator=gen).item() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    # numpy draws the Beta sample, seeded from the torch generator so the run stays reproducible.
    lam = float(np.random.default_rng(int(torch.randint(2**31, (1,), generator=gen))).beta(alpha, alpha))
    perm = torch.randperm(x.shape[0], generator=gen).to(x.device)
    if use_cutmix:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy = int(torch.randint(h, (1,), generator=gen))
        cx = int(torch.randint(w, (1,), generator=gen))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the exact pasted share
    else:
        x = lam * x + (1 - lam) * x[perm]
    return x, lam * targets + (1 - lam) * targets[perm]
