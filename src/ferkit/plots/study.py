"""Occlusion-study figures: the trained-on x evaluated-on matrix as an annotated heatmap."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_matrix(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: str | Path,
                title: str = "", vmin: float | None = None, vmax: float | None = None) -> None:
    """Rows = trained on, columns = evaluated on; every cell annotated, NaN (undefined metric) left blank."""
    values = np.asarray(values, dtype=float)
    fig, ax = plt.subplots(figsize=(1.4 + 1.15 * len(cols), 1.2 + 0.55 * len(rows)))
    shown = np.ma.masked_invalid(values)
    im = ax.imshow(shown, cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set(xlabel="evaluated on", ylabel="trained on", title=title)
    lo, hi = im.get_clim()
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isnan(values[i, j]):
                continue
            # light text on the dark end of viridis, dark text on the bright end
            dark = (values[i, j] - lo) < 0.6 * (hi - lo) if hi > lo else True
            ax.text(j, i, f"{values[i, j]:.3f}", ha="center", va="center", fontsize=8,
                    color="white" if dark else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
