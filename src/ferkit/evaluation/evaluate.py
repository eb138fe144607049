"""Evaluation runs: a model on a dataset split, optionally occluded or with TTA, to the metrics contract."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from ferkit.models.checkpoint import ModelConfig, load_model
from ferkit.data.dataset import FaceDataset
from ferkit.errors import FerkitError
from ferkit.inference.torch_backend import classify
from ferkit.evaluation.metrics import compute_metrics, expected_calibration_error

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    y_true: np.ndarray
    probs: np.ndarray


def occlude_faces(faces: np.ndarray, mask: str) -> np.ndarray:
    """Apply an occlusion mask to uint8 faces (N x H x W or N x H x W x C), returning uint8 faces."""
    if mask in (None, "", "full", "none"):
        return faces
    from ferkit.transforms.occlusion import apply_mask
    from ferkit.transforms.preprocess import uint8_to_nchw

    x = apply_mask(uint8_to_nchw(faces).float(), mask)
    x = x.round().clamp(0, 255).to(torch.uint8)
    return (x[:, 0] if faces.ndim == 3 else x.permute(0, 2, 3, 1)).numpy()


def check_labels(config: ModelConfig, dataset: FaceDataset) -> None:
    if list(config.labels) != list(dataset.label_names):
        raise FerkitError(
            f"the model predicts {config.labels} but the dataset is labelled {list(dataset.label_names)}; "
            f"evaluate a model trained on the same label set"
        )


def evaluate_model(model: nn.Module, config: ModelConfig, split: FaceDataset, *, tta: str | None = None,
                   occlusion: str | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
                   progress: bool = False) -> Evaluation:
    check_labels(config, split)
    faces = occlude_faces(split.images, occlusion) if occlusion else split.images
    probs = classify(model, faces, config, tta=tta, batch_size=batch_size, device=device, progress=progress)
    metrics = compute_metrics(split.labels, probs, config.labels)
    metrics["ece"] = expected_calibration_error(split.labels, probs)
    metrics["tta"] = config.tta if tta is None else tta
    metrics["occlusion"] = occlusion or "full"
    return Evaluation(metrics, split.labels, probs)


def without_train_copies(dataset: FaceDataset, split: FaceDataset) -> tuple[FaceDataset, int]:
    """``split`` minus the images that have an exact copy in the training split: a model may have memorised
    those, so they inflate test accuracy (FER2013 publictest has 270 such groups)."""
    from ferkit.data.quality import quality_report

    leaked = {src for group in quality_report(dataset).leak_groups if "train" in group
              for name, ids in group.items() if name != "train" for src in ids}
    keep = ~np.isin(split.sources, list(leaked))
    return split.subset(keep), int((~keep).sum())


def evaluate(model_spec: str, data: str | FaceDataset, split: str = "publictest", *, tta: str | None = None,
             occlusion: str | None = None, batch_size: int = 256, device: str = "cpu",
             progress: bool = False, exclude_leaks: bool = False) -> Evaluation:
    """Load ``model_spec`` (a checkpoint path or shipped name) and evaluate it on ``split`` of ``data``."""
    if batch_size < 1:
        raise FerkitError(f"--batch-size must be at least 1; got {batch_size}")
    model, config = load_model(model_spec, device=device)
    if isinstance(data, FaceDataset):
        dataset = data
    else:
        from ferkit.data import load_dataset

        dataset = load_dataset(data)
    subset = dataset.split(split)
    excluded = 0
    if exclude_leaks:
        subset, excluded = without_train_copies(dataset, subset)
    result = evaluate_model(model, config, subset, tta=tta, occlusion=occlusion,
                            batch_size=batch_size, device=device, progress=progress)
    if exclude_leaks:
        result.metrics["excluded_train_copies"] = excluded
    result.metrics["model"] = str(model_spec)
    result.metrics["split"] = split
    return result


def write_reports(result: Evaluation, out: str | Path) -> list[Path]:
    """Confusion matrices (counts and row-normalised), ROC curves, reliability plot, text report, JSON."""
    import json

    from ferkit.plots.evaluation import plot_confusion, plot_reliability, plot_roc

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    labels = result.metrics["labels"]
    cm = np.array(result.metrics["confusion_matrix"])
    paths = [out / "confusion_matrix.png", out / "confusion_matrix_normalized.png", out / "roc_curves.png",
             out / "reliability.png", out / "classification_report.txt", out / "metrics.json"]
    plot_confusion(cm, labels, paths[0], normalize=False)
    plot_confusion(cm, labels, paths[1], normalize=True)
    plot_roc(result.y_true, result.probs, labels, paths[2])
    plot_reliability(result.y_true, result.probs, paths[3])
    paths[4].write_text(format_report(result.metrics))
    paths[5].write_text(json.dumps(result.metrics, indent=2))
    return paths


def format_report(m: dict[str, Any]) -> str:
    def num(v):
        return "n/a" if v is None else f"{v:.4f}"

    lines = [
        f"model {m.get('model', '?')}  split {m.get('split', '?')}  n={m['n']}  tta={m['tta']}  "
        f"occlusion={m['occlusion']}",
        f"accuracy {num(m['accuracy'])}  macro F1 {num(m['macro_f1'])}  weighted F1 {num(m['weighted_f1'])}",
        f"AUC weighted {num(m['weighted_auc'])}  micro {num(m['micro_auc'])}  macro {num(m['macro_auc'])}  "
        f"ECE {num(m['ece'])}",
        "",
        f"{'class':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}",
    ]
    for name, r in m["per_class"].items():
        lines.append(f"{name:<10} {r['precision']:>9.4f} {r['recall']:>9.4f} {r['f1']:>9.4f} {r['support']:>8d}")
    return "\n".join(lines) + "\n"
