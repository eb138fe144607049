"""Every metric the FER literature reports, from true labels and predicted probabilities.

The output dict is the evaluation JSON contract (the evaluate --json contract in README.md).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support,
                             roc_auc_score)


def compute_metrics(y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro/weighted F1, one-vs-rest AUCs (weighted, micro, macro), per-class report, confusion."""
    y_true = np.asarray(y_true)
    k = len(labels)
    y_pred = probs.argmax(1)
    classes = np.arange(k)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=classes, zero_division=0
    )
    return {
        "n": int(len(y_true)),
        "labels": list(labels),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=classes, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y_true, y_pred, labels=classes, average="weighted", zero_division=0)),
        **roc_aucs(y_true, probs),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(labels, precision, recall, f1, support)
        },
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=classes).tolist(),
    }


def roc_aucs(y_true: np.ndarray, probs: np.ndarray) -> dict[str, float | None]:
    """One-vs-rest ROC AUCs. Classes absent from y_true have no ROC curve, so they are left out (a split
    without any 'disgust' faces still gets AUCs over the other classes); None when fewer than two remain."""
    present = np.unique(y_true)
    if len(present) < 2:
        return {"weighted_auc": None, "micro_auc": None, "macro_auc": None}
    onehot = (y_true[:, None] == present[None, :]).astype(np.int64)
    scores = probs[:, present]
    return {
        "weighted_auc": float(roc_auc_score(onehot, scores, average="weighted")),
        "micro_auc": float(roc_auc_score(onehot, scores, average="micro")),
        "macro_auc": float(roc_auc_score(onehot, scores, average="macro")),
    }


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins: the mean |accuracy - confidence| weighted by bin size."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y_true
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)
