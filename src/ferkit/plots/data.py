"""Dataset figures: class balance per split."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ferkit.data.quality import QualityReport


def plot_class_counts(report: QualityReport, path: str | Path, title: str = "Class counts per split") -> Path:
    """Grouped bar chart (one bar per split for each class), counts on the bars, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; safe because pyplot is imported only after this
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = report.label_names
    splits = list(report.splits)
    x = np.arange(len(labels))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(1.2 * len(labels) + 2, 4.5), layout="constrained")
    for k, split in enumerate(splits):
        counts = [report.splits[split].counts[c] for c in labels]
        bars = ax.bar(x + (k - (len(splits) - 1) / 2) * width, counts, width,
                      label=f"{split} (n={report.splits[split].n:,})")
        ax.bar_label(bars, fontsize=7, padding=1)
    ax.set_xticks(x, labels)
    ax.set_ylabel("images")
    ax.set_title(title)
    ax.legend(frameon=False)
    ax.spines[["top", "right"]].set_visible(False)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
