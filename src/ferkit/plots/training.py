"""Training curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict[str, float]], path: str | Path) -> None:
    """Train and validation accuracy and loss per epoch, side by side; with TTA and a weight average (--ema,
    --swa), their validation curves too (--swa's from the epoch its average starts)."""
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation"),
                       ("val_accuracy_tta", "validation, TTA"), ("ema_val_accuracy", "weight average"),
                       ("ema_val_accuracy_tta", "weight average, TTA"), ("swa_val_accuracy", "SWA"),
                       ("swa_val_accuracy_tta", "SWA, TTA")):
        _plot(ax_acc, history, key, label)
    for key, label in (("train_loss", "train"), ("val_loss", "validation"), ("ema_val_loss", "weight average"),
                       ("swa_val_loss", "SWA")):
        _plot(ax_loss, history, key, label)
    ax_acc.set(title="accuracy", xlabel="epoch")
    ax_loss.set(title="loss", xlabel="epoch")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot(ax, history: list[dict[str, float]], key: str, label: str) -> None:
    rows = [h for h in history if key in h]
    if rows:
        ax.plot([h["epoch"] for h in rows], [h[key] for h in rows], marker=".", label=label)
