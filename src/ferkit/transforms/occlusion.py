"""Occlusion masks: pure batched functions on N x C x H x W tensors (any device, any dtype).

One set of masks serves three uses: occlusion studies, evaluation under occlusion (``ferkit evaluate
--occlusion``) and training augmentation (``random_occlusion``). Every function returns a new tensor and
leaves its input untouched.

Geometry (rows counted from the top, columns from the image's left edge as displayed):

===========  ===========================================  =====================================
name         hidden pixels                                 what it hides on a centred face
===========  ===========================================  =====================================
``full``     none                                          nothing (the reference condition)
``upper``    rows ``[0, H // 2)``                          forehead, brows, eyes
``lower``    rows ``[H // 2, H)``                          nose, mouth, chin
``left``     columns ``[0, W // 2)``                       the half on the viewer's left
``right``    columns ``[W // 2, W)``                       the half on the viewer's right
``forehead`` rows ``[0, H // 4)``                          top quarter
``eyes``     rows ``[H // 4, H // 2)``                     second quarter: eyes and eyebrows
``mouth``    rows ``[H // 2, H)`` (same as ``lower``)      bottom half: nose and mouth
===========  ===========================================  =====================================

The cuts use integer division so that ``upper``/``lower`` and ``left``/``right`` partition the image exactly
(on an odd side the extra middle row/column belongs to ``lower``/``right``) and ``forehead`` + ``eyes`` ==
``upper``.

Left and right are from the *viewer's* perspective: ``left`` hides the image's left half, which on an
unmirrored photo is the subject's right side. The published occlusion study ferkit follows says "right masked" without
saying whose right; ferkit fixes the viewer's convention everywhere (masks, heat shares in explanations).

Fill value: "hidden" means black in *pixel* space. The default ``fill=0`` is black for uint8 or float
[0, 255] batches, which is where masks belong: apply them before ``ferkit.transforms.preprocess.normalize``. A trainer
that only holds normalised batches passes the normalised value of black instead, per channel::

    fill = black_fill(config)            # (0 - mean) / std for each channel
    x = apply_mask(x_normalised, "upper", fill=fill)
"""
from __future__ import annotations

from typing import Sequence

import torch

from ferkit.errors import FerkitError

#: Mask names accepted by ``apply_mask`` (and ``ferkit evaluate --occlusion``), in study order.
MASKS: tuple[str, ...] = ("full", "upper", "lower", "left", "right", "forehead", "eyes", "mouth")
#: Masks that have a landmark-based variant (used when 5-point landmarks are given).
LANDMARK_MASKS: tuple[str, ...] = ("eyes", "mouth")

Fill = float | int | Sequence[float] | torch.Tensor


# --------------------------------------------------------------------------------------------- helpers
def _fill_like(fill: Fill, x: torch.Tensor) -> torch.Tensor:
    """A scalar or per-channel fill as a tensor broadcastable to N x C x H x W, in x's dtype and device."""
    f = torch.as_tensor(fill, dtype=x.dtype, device=x.device)
    return f.view(1, -1, 1, 1) if f.ndim == 1 else f


def _fill(x: torch.Tensor, hide: torch.Tensor, fill: Fill) -> torch.Tensor:
    """Replace the pixels where ``hide`` (bool, broadcastable to x) is True by ``fill``."""
    return torch.where(hide, _fill_like(fill, x), x)


def _band(x: torch.Tensor, rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None) -> torch.Tensor:
    """A 1 x 1 x H x W bool mask of the rectangle rows[0]:rows[1], cols[0]:cols[1] (None = all)."""
    h, w = x.shape[-2:]
    hide = torch.zeros(1, 1, h, w, dtype=torch.bool, device=x.device)
    r0, r1 = rows or (0, h)
    c0, c1 = cols or (0, w)
    hide[..., r0:r1, c0:c1] = True
    return hide


def region(name: str, height: int, width: int, device: str | torch.device = "cpu") -> torch.Tensor:
    """The H x W bool mask (True = hidden) of a named geometric mask; see the module docstring."""
    name = check_mask(name)
    probe = torch.empty(1, 1, height, width, device=device)
    h2, h4, w2 = height // 2, height // 4, width // 2
    rects: dict[str, tuple[tuple[int, int] | None, tuple[int, int] | None]] = {
        "full": ((0, 0), None),
        "upper": ((0, h2), None),
        "lower": ((h2, height), None),
        "mouth": ((h2, height), None),
        "forehead": ((0, h4), None),
        "eyes": ((h4, h2), None),
        "left": (None, (0, w2)),
        "right": (None, (w2, width)),
    }
    rows, cols = rects[name]
    return _band(probe, rows, cols)[0, 0]


def black_fill(config) -> torch.Tensor:
    """The normalised value of a black pixel per channel, for masking batches already normalised."""
    mean = torch.tensor(config.mean, dtype=torch.float32)
    std = torch.tensor(config.std, dtype=torch.float32)
    return -mean / std


def check_mask(name: str) -> str:
    if name not in MASKS:
        raise FerkitError(f"unknown occlusion mask {name!r}; valid masks: {', '.join(MASKS)}")
    return name


# ---------------------------------------------------------------------------------- geometric masks
def full(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """No mask: the reference condition (returns a copy so callers may modify the result)."""
    return x.clone()


def upper(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the upper half, rows [0, H // 2)."""
    return _fill(x, _band(x, rows=(0, x.shape[-2] // 2)), fill)


def lower(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the lower half, rows [H // 2, H)."""
    return _fill(x, _band(x, rows=(x.shape[-2] // 2, x.shape[-2])), fill)


def left(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the viewer's left half, columns [0, W // 2) (the subject's right on an unmirrored photo)."""
    return _fill(x, _band(x, cols=(0, x.shape[-1] // 2)), fill)


def right(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the viewer's right half, columns [W // 2, W) (the subject's left on an unmirrored photo)."""
    return _fill(x, _band(x, cols=(x.shape[-1] // 2, x.shape[-1])), fill)


def forehead(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the top quarter, rows [0, H // 4)."""
    return _fill(x, _band(x, rows=(0, x.shape[-2] // 4)), fill)


def eyes(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the second quarter (eyes and eyebrows on an aligned crop), rows [H // 4, H // 2)."""
    h = x.shape[-2]
    return _fill(x, _band(x, rows=(h // 4, h // 2)), fill)


def mouth(x: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide the bottom half (nose and mouth), rows [H // 2, H); identical to ``lower``."""
    return lower(x, fill)


# --------------------------------------------------------------------------------- landmark masks
# 5-point landmarks in crop pixel coordinates (x, y), N x 5 x 2, in the order detectors such as YuNet and
# RetinaFace emit: two eyes, nose tip, two mouth corners. Which eye comes first does not matter here.
# Regions live in a face frame so they follow head roll: u runs along the eye line, v down the face,
# both in units of the inter-ocular distance (iod), with the origin between the eyes.
_EYES_V = (-0.65, 0.3)  # brows sit about half an iod above the eye line, lower lids well within 0.3 below
_EYES_U = 1.0  # eye centres are at u = +-0.5; one more half-iod covers the outer eye corners and brow tails


def _face_frame(landmarks: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel coordinates (u, v) in the face frame, N x H x W each, and each face's nose-tip v (N)."""
    lm = landmarks.float()
    eye_a, eye_b, nose = lm[:, 0], lm[:, 1], lm[:, 2]
    centre = (eye_a + eye_b) / 2
    axis = eye_b - eye_a
    iod = axis.norm(dim=1).clamp_min(1e-6)
    u_dir = axis / iod[:, None]
    u_dir = torch.where(u_dir[:, :1] < 0, -u_dir, u_dir)  # u points to the image's right whatever the eye order
    v_dir = torch.stack([-u_dir[:, 1], u_dir[:, 0]], dim=1)  # u rotated +90 degrees: points down the face
    ys = torch.arange(height, device=lm.device, dtype=lm.dtype) + 0.5  # pixel centres
    xs = torch.arange(width, device=lm.device, dtype=lm.dtype) + 0.5
    dx = xs.view(1, 1, -1) - centre[:, 0].view(-1, 1, 1)
    dy = ys.view(1, -1, 1) - centre[:, 1].view(-1, 1, 1)
    u = (dx * u_dir[:, 0].view(-1, 1, 1) + dy * u_dir[:, 1].view(-1, 1, 1)) / iod.view(-1, 1, 1)
    v = (dx * v_dir[:, 0].view(-1, 1, 1) + dy * v_dir[:, 1].view(-1, 1, 1)) / iod.view(-1, 1, 1)
    nose_v = ((nose - centre) * v_dir).sum(1) / iod
    return u, v, nose_v


def landmark_region(name: str, landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """N x H x W bool (True = hidden) for ``eyes`` or ``mouth`` placed by 5-point landmarks (N x 5 x 2).

    ``eyes``: a band along the eye line from the brows to just below the lower lids (never past the start
    of the mouth mask), wide enough for both eyes and brows. ``mouth``: everything below the midpoint
    between the eye line and the nose tip, across the whole width, like a surgical mask over nose and mouth.
    """
    if name not in LANDMARK_MASKS:
        raise FerkitError(f"no landmark-based mask {name!r}; landmark masks: {', '.join(LANDMARK_MASKS)}")
    if landmarks.ndim != 3 or landmarks.shape[1:] != (5, 2):
        raise FerkitError(f"expected 5-point landmarks as N x 5 x 2, got shape {tuple(landmarks.shape)}")
    u, v, nose_v = _face_frame(landmarks, height, width)
    nose_bridge = (nose_v / 2).view(-1, 1, 1)  # where the mouth mask starts; the eyes band stops there too
    if name == "eyes":
        return (v >= _EYES_V[0]) & (v < torch.clamp(nose_bridge, max=_EYES_V[1])) & (u.abs() <= _EYES_U)
    return v >= nose_bridge


def eyes_from_landmarks(x: torch.Tensor, landmarks: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide eyes and eyebrows of each face, located by its landmarks (N x 5 x 2, crop pixel coordinates)."""
    hide = landmark_region("eyes", landmarks.to(x.device), *x.shape[-2:])
    return _fill(x, hide[:, None], fill)


def mouth_from_landmarks(x: torch.Tensor, landmarks: torch.Tensor, fill: Fill = 0) -> torch.Tensor:
    """Hide nose and mouth of each face, located by its landmarks (N x 5 x 2, crop pixel coordinates)."""
    hide = landmark_region("mouth", landmarks.to(x.device), *x.shape[-2:])
    return _fill(x, hide[:, None], fill)


_BY_NAME = {"full": full, "upper": upper, "lower": lower, "left": left, "right": right,
            "forehead": forehead, "eyes": eyes, "mouth": mouth}


def apply_mask(x: torch.Tensor, name: str, fill: Fill = 0, landmarks: torch.Tensor | None = None) -> torch.Tensor:
    """Apply mask ``name`` (one of ``MASKS``) to a batch; with landmarks, ``eyes``/``mouth`` follow the face."""
    check_mask(name)
    if landmarks is not None and name in LANDMARK_MASKS:
        hide = landmark_region(name, landmarks.to(x.device), *x.shape[-2:])
        return _fill(x, hide[:, None], fill)
    return _BY_NAME[name](x, fill)


# ------------------------------------------------------------------------------ random occlusion
#: The kinds ``random_occlusion`` draws from, with equal probability.
RANDOM_KINDS: tuple[str, ...] = ("half", "band", "patch")


def random_regions(n: int, height: int, width: int, p: float = 0.5,
                   generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """N x 1 x H x W bool masks for ``random_occlusion``; see there. Fully batched, no per-sample loop."""
    gen_device = generator.device if generator is not None else torch.device("cpu")

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=gen_device).cpu()

    apply, kind, half, size, pos = rand(n) < p, (rand(n) * 3).long(), (rand(n) * 4).long(), rand(n, 2), rand(n, 2)
    h, w = height, width
    # Every kind is a rectangle [y0, y1) x [x0, x1); build all three and pick per sample.
    zeros, ws = torch.zeros(n, dtype=torch.long), torch.full((n,), w)
    # Halves: exactly the cuts of upper / lower / left / right.
    half_y0 = torch.where(half == 1, h // 2, 0)
    half_y1 = torch.where(half == 0, h // 2, h)
    half_x0 = torch.where(half == 3, w // 2, 0)
    half_x1 = torch.where(half == 2, w // 2, w)
    # Bands: full width, a quarter to a half of the height (forehead, eyes, mouth-like strips and between).
    band_h = (h / 4 + size[:, 0] * (h / 2 - h / 4)).round().long().clamp(1, h)
    band_y0 = (pos[:, 0] * (h - band_h + 1)).floor().long()
    # Patches: a square with side a quarter to a half of the shorter side, anywhere inside the image.
    side = min(h, w)
    patch_s = (side / 4 + size[:, 1] * (side / 2 - side / 4)).round().long().clamp(1, side)
    patch_y0 = (pos[:, 0] * (h - patch_s + 1)).floor().long()
    patch_x0 = (pos[:, 1] * (w - patch_s + 1)).floor().long()

    def pick(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return torch.where(kind == 0, a, torch.where(kind == 1, b, c))

    y0 = pick(half_y0, band_y0, patch_y0)
    y1 = pick(half_y1, band_y0 + band_h, patch_y0 + patch_s)
    x0 = pick(half_x0, zeros, patch_x0)
    x1 = pick(half_x1, ws, patch_x0 + patch_s)
    y1 = torch.where(apply, y1, y0)  # an empty rectangle leaves the sample untouched
    rows = torch.arange(h).view(1, -1, 1)
    cols = torch.arange(w).view(1, 1, -1)
    hide = ((rows >= y0.view(-1, 1, 1)) & (rows < y1.view(-1, 1, 1))
            & (cols >= x0.view(-1, 1, 1)) & (cols < x1.view(-1, 1, 1)))
    return hide[:, None].to(device)


def random_occlusion(x: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None,
                     fill: Fill = 0) -> torch.Tensor:
    """Training augmentation: with probability ``p`` per sample hide a random half, band or patch.

    Each occluded sample draws its kind uniformly from ``RANDOM_KINDS``:
    ``half``: one of upper / lower / left / right, with exactly the cuts of the named masks;
    ``band``: a full-width horizontal strip, 1/4 to 1/2 of the height, at a random height;
    ``patch``: a square, 1/4 to 1/2 of the shorter side, at a random position.
    Randomness comes from ``generator`` (on any device; draws are tiny, the mask is built on x's device).
    Apply before normalising with ``fill=0``, or after with ``fill=black_fill(config)``.
    """
    hide = random_regions(x.shape[0], x.shape[-2], x.shape[-1], p, generator, x.device)
    return _fill(x, hide, fill)
