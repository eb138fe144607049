"""Explanation figures: heatmap overlays, feature-map grids and the per-emotion summary grid.

Figures use matplotlib's object API (``Figure``, no pyplot), so drawing leaves no global state behind and
needs no display.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

DEFAULT_CMAP = "jet"  # the convention of the Grad-CAM and saliency literature; readers recognise it at a glance


def _gray_rgb(face: np.ndarray) -> np.ndarray:
    face = np.asarray(face)
    if face.ndim == 3 and face.shape[2] == 1:
        face = face[..., 0]
    return np.repeat(face[..., None], 3, axis=2) if face.ndim == 2 else face[..., :3]


def _resize(heat: np.ndarray, height: int, width: int) -> np.ndarray:
    if heat.shape == (height, width):
        return heat
    import cv2

    return cv2.resize(np.asarray(heat, dtype=np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def colorize(heat: np.ndarray, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """H x W heat in [0, 1] -> H x W x 3 uint8 colours."""
    from matplotlib import colormaps

    rgba = colormaps[cmap](np.clip(np.nan_to_num(heat), 0, 1))
    return (rgba[..., :3] * 255 + 0.5).astype(np.uint8)


def overlay(face: np.ndarray, heat: np.ndarray, alpha: float = 0.45, cmap: str = DEFAULT_CMAP) -> np.ndarray:
    """Blend a heatmap (any size, resized to the face) on a uint8 face (gray or RGB) -> H x W x 3 uint8."""
    rgb = _gray_rgb(face).astype(np.float32)
    heat = _resize(heat, *rgb.shape[:2])
    out = (1 - alpha) * rgb + alpha * colorize(heat, cmap).astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _imshow(ax, image: np.ndarray, **kwargs) -> None:
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255 if image.ndim == 2 else None,
              interpolation="nearest", **kwargs)
    ax.set_axis_off()


def save_overlay(path: str | Path, face: np.ndarray, heat: np.ndarray, title: str, *,
                 alpha: float = 0.45, cmap: str = DEFAULT_CMAP, dpi: int = 120) -> Path:
    """Two panels, the face and the heatmap blended on it, with ``title`` (emotion, probability, method)."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(5.2, 2.9), layout="constrained")
    axes = fig.subplots(1, 2)
    _imshow(axes[0], np.asarray(face))
    _imshow(axes[1], overlay(face, heat, alpha, cmap))
    fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=axes[1], fraction=0.046, pad=0.02, label="relative heat")
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=dpi)
    return path


def feature_mosaic(maps: np.ndarray, max_maps: int = 64, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """K x h x w maps -> one 2-D mosaic (strongest channels first, each scaled to [0, 1], NaN gutters)
    and the channel index of each tile in reading order."""
    maps = np.asarray(maps, dtype=np.float32)
    order = np.argsort(-np.abs(maps).mean((1, 2)), kind="stable")[:max_maps]  # most active = most informative
    cols = int(np.ceil(np.sqrt(len(order))))
    rows = int(np.ceil(len(order) / cols))
    h, w = maps.shape[1:]
    mosaic = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, dtype=np.float32)
    for t, k in enumerate(order):
        m = maps[k]
        lo, hi = float(m.min()), float(m.max())
        r, c = divmod(t, cols)
        y0, x0 = r * (h + pad), c * (w + pad)
        mosaic[y0:y0 + h, x0:x0 + w] = (m - lo) / (hi - lo) if hi > lo else 0
    return mosaic, order


def save_feature_grid(path: str | Path, maps: np.ndarray, title: str, *, max_maps: int = 64,
                      cmap: str = "viridis", dpi: int = 120) -> Path:
    """Grid of one face's feature maps (K x h x w), strongest channels first, each scaled to its own range.

    Drawn as one mosaic image rather than K axes: the same picture, an order of magnitude faster to render.
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mosaic, order = feature_mosaic(maps, max_maps)
    scale = max(4.0, min(9.0, mosaic.shape[1] / 12))
    fig = Figure(figsize=(scale, scale * mosaic.shape[0] / mosaic.shape[1] + 0.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(np.ma.masked_invalid(mosaic), cmap=cmap, interpolation="nearest")
    ax.set_axis_off()
    fig.suptitle(f"{title}\n{len(order)} of {len(maps)} channels, most active first", fontsize=10)
    fig.savefig(path, dpi=dpi)
    return path


def save_summary_grid(path: str | Path, mean_maps: Mapping[str, np.ndarray], emotions: Sequence[str],
                      mean_faces: np.ndarray, counts: Sequence[int], title: str, *, alpha: float = 0.5,
                      cmap: str = DEFAULT_CMAP, dpi: int = 110) -> Path:
    """One page: one column per emotion, the mean face on top, then one row per method's mean heatmap.

    ``mean_maps[method]`` is E x H x W (one map per emotion, NaN where an emotion has no faces);
    ``mean_faces`` is E x H x W uint8 (the average face of each emotion, the overlay's background).
    """
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    methods = list(mean_maps)
    rows, cols = len(methods) + 1, len(emotions)
    fig = Figure(figsize=(1.45 * cols + 0.6, 1.5 * rows + 0.5), layout="constrained")
    axes = np.asarray(fig.subplots(rows, cols, squeeze=False))
    for j, emotion in enumerate(emotions):
        _imshow(axes[0, j], mean_faces[j])
        axes[0, j].set_title(f"{emotion}\n(n={counts[j]})", fontsize=8)
        for i, method in enumerate(methods, start=1):
            ax = axes[i, j]
            heat = mean_maps[method][j]
            if counts[j] == 0 or not np.isfinite(heat).all():
                ax.set_axis_off()
                continue
            peak = heat.max()
            _imshow(ax, overlay(mean_faces[j], heat / peak if peak > 0 else heat, alpha, cmap))
            if j == 0:
                ax.set_axis_on()
                ax.set_xticks([])
                ax.set_yticks([])
                ax.set_ylabel(method, fontsize=9)
    axes[0, 0].set_axis_on()
    axes[0, 0].set_xticks([])
    axes[0, 0].set_yticks([])
    axes[0, 0].set_ylabel("mean face", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=dpi)
    return path
