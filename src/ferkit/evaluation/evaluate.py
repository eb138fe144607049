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


@dataclass
class LabelMapping:
    """How a model's classes meet a dataset's, by name: evaluation runs on the ``shared`` classes (in the
    model's order); the dataset's other classes' faces are left out, and the model's other outputs ignored."""

    shared: list[str]
    dataset_only: dict[str, int]  # class -> faces left out
    model_only: list[str]

    @property
    def identity(self) -> bool:
        return not self.dataset_only and not self.model_only

    def to_dict(self) -> dict[str, Any]:
        return {"shared": self.shared, "dataset_classes_left_out": self.dataset_only,
                "model_classes_not_in_dataset": self.model_only}

    def describe(self) -> str:
        parts = []
        if self.dataset_only:
            parts.append("left out the dataset's " + ", ".join(f"{k} ({v} faces)" for k, v in self.dataset_only.items())
                         + " (the model does not predict them)")
        if self.model_only:
            parts.append(f"ignored the model's {', '.join(self.model_only)} (not in the dataset)")
        return "; ".join(parts)


def map_labels(config: ModelConfig, dataset: FaceDataset) -> LabelMapping:
    """Match classes by canonical name; refuse a model and a dataset that share none."""
    model, data = list(config.labels), list(dataset.label_names)
    shared = [name for name in model if name in data]
    if not shared:
        raise FerkitError(
            f"the model predicts {model} but the dataset is labelled {data}; they share no class, so there is "
            f"nothing to evaluate"
        )
    counts = dataset.class_counts()
    return LabelMapping(shared, {n: counts[n] for n in data if n not in shared and counts[n]},
                        [n for n in model if n not in data])


def check_labels(config: ModelConfig, dataset: FaceDataset) -> LabelMapping:
    return map_labels(config, dataset)


def evaluate_model(model: nn.Module | Any, config: ModelConfig, split: FaceDataset, *, tta: str | None = None,
                   occlusion: str | None = None, batch_size: int = 256, device: str | torch.device = "cpu",
                   progress: bool = False) -> Evaluation:
    """Metrics of ``model`` (a torch module, or an ``OnnxClassifier`` run with the TTA it was loaded with) on
    ``split``. When the label sets differ (a model trained on another dataset), the
    faces of classes the model does not know are left out and its probabilities are renormalised over the
    shared classes; ``left_out`` says what was left out and ``accuracy_all_outputs`` is the accuracy when the
    model may also answer with its extra classes (which then count as wrong)."""
    mapping = map_labels(config, split)
    if mapping.dataset_only:
        split = split.subset(np.isin(split.labels, [split.label_names.index(n) for n in mapping.shared]))
    y_true = np.array([mapping.shared.index(split.label_names[i]) for i in split.labels], np.int64)
    faces = occlude_faces(split.images, occlusion) if occlusion else split.images
    on_onnx = hasattr(model, "predict_proba")  # an ONNX Runtime classifier: its TTA was fixed when it was loaded
    if on_onnx:
        probs = model.predict_proba(faces)
        tta = model.tta
    else:
        probs = classify(model, faces, config, tta=tta, batch_size=batch_size, device=device, progress=progress)
    all_outputs = probs
    if not mapping.identity:
        columns = [list(config.labels).index(n) for n in mapping.shared]
        probs = probs[:, columns]
        probs = probs / np.maximum(probs.sum(1, keepdims=True), 1e-12)
    metrics = compute_metrics(y_true, probs, mapping.shared)
    metrics["ece"] = expected_calibration_error(y_true, probs)
    metrics["tta"] = config.tta if tta is None else tta
    metrics["occlusion"] = occlusion or "full"
    if on_onnx:
        metrics["backend"] = "onnx int8" if model.quantized else "onnx"
    if not mapping.identity:
        predicted = np.array(config.labels)[all_outputs.argmax(1)]
        metrics["accuracy_all_outputs"] = float(np.mean(predicted == np.array(mapping.shared)[y_true]))
        metrics["left_out"] = mapping.to_dict()
    return Evaluation(metrics, y_true, probs)


def _count_missed_as_wrong(metrics: dict[str, Any], photos: FaceDataset, missed: list[str]) -> None:
    """``accuracy`` over every photo of the evaluated classes, a photo without a detected face counting as
    wrong; the other metrics stay over the detected faces (``accuracy_detected``, ``n_detected``)."""
    shared = set(metrics["labels"])
    missed_set = set(missed)
    counted = [s for s, y in zip(photos.sources.tolist(), photos.labels) if photos.label_names[y] in shared]
    no_face = [s for s in counted if s in missed_set]
    n_detected = metrics["n"]
    metrics["accuracy_detected"] = metrics["accuracy"]
    metrics["n_detected"] = n_detected
    metrics["n"] = len(counted)
    metrics["accuracy"] = metrics["accuracy"] * n_detected / max(len(counted), 1)
    metrics["no_face"] = {"count": len(no_face), "examples": no_face[:10]}


def without_train_copies(dataset: FaceDataset, split: FaceDataset) -> tuple[FaceDataset, int]:
    """``split`` minus the images that have an exact copy in the training split: a model may have memorised
    those, so they inflate test accuracy (FER2013 publictest has 270 such groups)."""
    from ferkit.data.quality import quality_report

    leaked = {src for group in quality_report(dataset).leak_groups if "train" in group
              for name, ids in group.items() if name != "train" for src in ids}
    keep = ~np.isin(split.sources, list(leaked))
    return split.subset(keep), int((~keep).sum())


def evaluate(model_spec: str, data: str | FaceDataset, split: str | None = None, *, tta: str | None = None,
             occlusion: str | None = None, batch_size: int = 256, device: str = "cpu",
             progress: bool = False, exclude_leaks: bool = False, data_options: dict[str, Any] | None = None,
             detector: str | Any | None = None, backend: str = "torch") -> Evaluation:
    """Load ``model_spec`` (a checkpoint path or shipped name) and evaluate it on ``split`` of ``data`` (a
    dataset path, read with ``data_options`` such as ``format`` or ``classes``, or a FaceDataset). ``split``
    defaults to the dataset's evaluation split (:meth:`FaceDataset.evaluation_split`).

    ``detector`` (a name such as ``yunet`` or ``haar``, or a detector object) is for datasets of whole photos
    rather than face crops: each photo's largest face is found and cropped as the model was trained, and a
    photo without one counts as wrong (see :func:`detected_faces`).

    ``backend="onnx"`` evaluates what the default pipeline runs on a CPU: the model's ONNX twin on ONNX Runtime
    (a shipped model's own .onnx, INT8 where it ships so; else an export cached once), with ``tta`` or its own.
    """
    if batch_size < 1:
        raise FerkitError(f"--batch-size must be at least 1; got {batch_size}")
    if backend == "onnx":
        from ferkit.inference.onnx_backend import load_onnx_classifier

        model = load_onnx_classifier(model_spec, tta=tta, device=device, batch_size=batch_size)
        config = model.config
    elif backend == "torch":
        model, config = load_model(model_spec, device=device)
    else:
        raise FerkitError(f"unknown backend {backend!r}; choose torch or onnx")
    if detector is not None and not isinstance(data, FaceDataset):
        # Whole photos, padded rather than cut to a square, at a size where a detector finds faces.
        data_options = {**(data_options or {}), "fit": "pad"}
        data_options["size"] = data_options.get("size") or PHOTO_SIZE
    dataset = _dataset(data, data_options)
    return _evaluate_loaded(model, config, str(model_spec), dataset, split, tta=tta, occlusion=occlusion,
                            batch_size=batch_size, device=device, progress=progress, exclude_leaks=exclude_leaks,
                            detector=_detector(detector))


# Side at which whole photos are cached for detection: a face a tenth of the photo is still 50 px.
PHOTO_SIZE = 512


def _detector(detector):
    if detector is None or not isinstance(detector, str):
        return detector
    from ferkit.inference.detectors import create_detector

    return None if detector == "none" else create_detector(detector)


def detected_faces(split: FaceDataset, detector, config: ModelConfig) -> tuple[FaceDataset, list[str]]:
    """Each photo's largest face, cropped (and levelled, with landmarks) as the model's pipeline crops it;
    and the photos where the detector found none."""
    from ferkit.inference.align import crop_face

    color = "rgb" if split.channels == 3 else "bgr"
    size = config.crop_size
    faces = np.zeros((len(split), size, size, *split.images.shape[3:]), np.uint8)
    found = np.zeros(len(split), bool)
    for i, photo in enumerate(split.images):
        detections = detector.detect(photo, color=color)
        if detections:
            best = max(detections, key=lambda d: d.box[2] * d.box[3])
            faces[i] = crop_face(photo, best, size, config.crop_margin)
            found[i] = True
    crops = split.subset(found)
    crops.images = faces[found]
    return crops, split.sources[~found].tolist()


def _dataset(data: str | Path | FaceDataset, options: dict[str, Any] | None) -> FaceDataset:
    if isinstance(data, FaceDataset):
        return data
    from ferkit.data import load_dataset

    return load_dataset(data, **(options or {}))


def _evaluate_loaded(model: nn.Module, config: ModelConfig, model_name: str, dataset: FaceDataset,
                     split: str | None, *, tta: str | None, occlusion: str | None, batch_size: int, device: str,
                     progress: bool, exclude_leaks: bool, detector=None) -> Evaluation:
    split = split or dataset.evaluation_split()
    subset = dataset.split(split)
    excluded = 0
    if exclude_leaks:
        subset, excluded = without_train_copies(dataset, subset)
    missed: list[str] = []
    photos = subset
    if detector is not None:
        subset, missed = detected_faces(subset, detector, config)
        if not len(subset):
            raise FerkitError(f"the {getattr(detector, 'name', 'face')} detector found no face in any of the "
                              f"{len(photos)} photos; are they face crops already? (then evaluate without a detector)")
    result = evaluate_model(model, config, subset, tta=tta, occlusion=occlusion,
                            batch_size=batch_size, device=device, progress=progress)
    if detector is not None:
        _count_missed_as_wrong(result.metrics, photos, missed)
    if exclude_leaks:
        result.metrics["excluded_train_copies"] = excluded
    result.metrics["model"] = model_name
    result.metrics["dataset"] = dataset.name
    result.metrics["split"] = split
    return result


# ---------------------------------------------------------------------------------------------------------------
# Cross-dataset evaluation: several models x several datasets


@dataclass
class CrossDataset:
    """One row per (model, dataset): the table that says how models trained on one dataset fare on others."""

    rows: list[dict[str, Any]]

    COLUMNS = ("model", "dataset", "split", "n", "accuracy", "macro_f1", "weighted_f1", "shared_classes",
               "left_out")

    def table(self) -> list[dict[str, Any]]:
        """Flat rows (what the CSV holds): left-out classes as one readable cell."""
        out = []
        for r in self.rows:
            m = r["metrics"]
            left = m.get("left_out") or {}
            cells = [f"{k} ({v})" for k, v in left.get("dataset_classes_left_out", {}).items()]
            cells += [f"model's {k}" for k in left.get("model_classes_not_in_dataset", [])]
            out.append({"model": r["model"], "dataset": r["dataset"], "split": m["split"], "n": m["n"],
                        "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "weighted_f1": m["weighted_f1"],
                        "shared_classes": len(m["labels"]), "left_out": "; ".join(cells)})
        return out

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        writer = csv.DictWriter(buf, self.COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in self.table():
            writer.writerow({**row, "accuracy": f"{row['accuracy']:.4f}", "macro_f1": f"{row['macro_f1']:.4f}",
                             "weighted_f1": f"{row['weighted_f1']:.4f}"})
        return buf.getvalue()

    def to_markdown(self) -> str:
        """Accuracy (macro F1) with models as rows and datasets as columns, then what each cell left out."""
        models = list(dict.fromkeys(r["model"] for r in self.rows))
        datasets = list(dict.fromkeys(r["dataset"] for r in self.rows))
        cell = {(r["model"], r["dataset"]): r for r in self.table()}
        lines = ["| model | " + " | ".join(datasets) + " |", "|---|" + "---:|" * len(datasets)]
        for m in models:
            cells = []
            for d in datasets:
                r = cell.get((m, d))
                cells.append("" if r is None else f"{100 * r['accuracy']:.1f}% ({r['macro_f1']:.3f})")
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Accuracy (macro F1) on each dataset's evaluation split, over the classes model and dataset "
                     "share.")
        notes = [f"- {r['model']} on {r['dataset']} ({r['split']}, n={r['n']:,}): {r['left_out']}"
                 for r in self.table() if r["left_out"]]
        if notes:
            lines += ["", "Left out:"] + notes
        return "\n".join(lines) + "\n"

    def write(self, out: str | Path) -> list[Path]:
        """``cross_dataset.md`` and ``cross_dataset.csv`` in folder ``out``."""
        from ferkit.paths import atomic_write

        out = Path(out)
        paths = [out / "cross_dataset.md", out / "cross_dataset.csv"]
        for path, text in zip(paths, (self.to_markdown(), self.to_csv())):
            with atomic_write(path, "w") as fh:
                fh.write(text)
        return paths


def evaluate_matrix(models: list[str], datasets: list[str | Path | FaceDataset], *, split: str | None = None,
                    names: list[str] | None = None, data_options: dict[str, Any] | None = None,
                    tta: str | None = None, batch_size: int = 256, device: str = "cpu",
                    progress: bool = False) -> CrossDataset:
    """Every model on every dataset (each loaded once), on each dataset's evaluation split unless ``split``
    is given. ``names`` label the datasets in the table (default: the folder or file name)."""
    if batch_size < 1:
        raise FerkitError(f"--batch-size must be at least 1; got {batch_size}")
    loaded = [load_model(m, device=device) for m in models]
    labels = names or [d.name if isinstance(d, FaceDataset) else Path(d).name for d in datasets]
    rows = []
    for data, name in zip(datasets, labels):
        dataset = _dataset(data, data_options)
        for spec, (model, config) in zip(models, loaded):
            result = _evaluate_loaded(model, config, str(spec), dataset, split, tta=tta, occlusion=None,
                                      batch_size=batch_size, device=device, progress=progress, exclude_leaks=False)
            rows.append({"model": _short(str(spec)), "dataset": name, "metrics": result.metrics})
    return CrossDataset(rows)


def _short(spec: str) -> str:
    """``runs/rafdb/best.pt`` -> ``rafdb/best.pt``: enough to tell the table's rows apart."""
    path = Path(spec)
    return f"{path.parent.name}/{path.name}" if path.suffix and path.parent.name else spec


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
    ]
    if "no_face" in m:
        lines.append(f"faces found by the detector in {m['n_detected']} of {m['n']} photos (the "
                     f"{m['no_face']['count']} without count as wrong); accuracy on the found faces "
                     f"{num(m['accuracy_detected'])}; the figures below are over the found faces")
    left = m.get("left_out")
    if left:
        mapping = LabelMapping(left["shared"], left["dataset_classes_left_out"], left["model_classes_not_in_dataset"])
        line = f"evaluated on the {len(mapping.shared)} classes model and dataset share; {mapping.describe()}"
        if mapping.model_only:
            line += f"; accuracy counting the model's other answers as wrong {num(m.get('accuracy_all_outputs'))}"
        lines.append(line)
    lines += ["", f"{'class':<10} {'precision':>9} {'recall':>9} {'f1':>9} {'support':>8}"]
    for name, r in m["per_class"].items():
        lines.append(f"{name:<10} {r['precision']:>9.4f} {r['recall']:>9.4f} {r['f1']:>9.4f} {r['support']:>8d}")
    return "\n".join(lines) + "\n"
