"""Training curves."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_curves(history: list[dict[str, float]], path: str | Path) -> None:
    """Train and validation accuracy and loss per epoch, side by side; with TTA and a weight average (--ema),
    their validation curves too."""
    epochs = [h["epoch"] for h in history]
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    for key, label in (("train_accuracy", "train"), ("val_accuracy", "validation"),
                       ("val_accuracy_tta", "validation, TTA"), ("ema_val_accuracy", "weight average"),
                       ("ema_val_accuracy_tta", "weight average, TTA")):
        if key in history[0]:
            ax_acc.plot(epochs, [h[key] for h in history], marker=".", label=label)
    for key, label in (("train_loss", "train"), ("val_loss", "validation"), ("ema_val_loss", "weight average")):
        if key in history[0]:
            ax_loss.plot(epochs, [h[key] for h in history], marker=".", label=label)
    ax_acc.set(title="accuracy", xlabel="epoch")
    ax_loss.set(title="loss", xlabel="epoch")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
