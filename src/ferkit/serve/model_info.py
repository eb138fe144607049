"""What ``GET /api/v1/models`` says about the loaded model: labels, input size, backend, and the accuracy its
card reports, read from the checkpoint's ``meta`` (the numbers MODEL_CARD.md quotes) without importing torch."""
from __future__ import annotations

import logging
import pickle
import zipfile
from pathlib import Path
from typing import Any

from ferkit.paths import WEIGHTS_DIR

log = logging.getLogger(__name__)


def model_info(recognizer, model: str) -> dict[str, Any]:
    clf = recognizer.classifier
    return {
        "model": model,
        "arch": _config(clf).get("arch"),
        "labels": list(recognizer.labels),
        "input_size": int(clf.input_size),
        "backend": recognizer.backend,
        "tta": clf.tta,
        "classifier": clf.description,
        "detector": recognizer.detector_description,
        "card": model_card(clf, model),
    }


def model_card(clf, model: str) -> dict[str, Any] | None:
    """Accuracy, macro F1 and ECE on the split the model was selected on, for the TTA it runs with; None when
    the model carries no metrics (a bare checkpoint, an ONNX export of an unknown file)."""
    meta = _meta(clf, model)
    metrics = meta.get("metrics") if meta else None
    if not metrics:
        return None
    by_tta = meta.get("accuracy_by_tta") or {}
    card = {
        "name": meta.get("name", model),
        "split": meta.get("selected_on"),
        "n": metrics.get("n"),
        "tta": clf.tta,
        # The accuracy for the TTA this server runs; the card's headline number is for the model's own TTA.
        "accuracy": by_tta.get(clf.tta, metrics.get("accuracy") if metrics.get("tta") == clf.tta else None),
        "accuracy_by_tta": by_tta,
        "macro_f1": metrics.get("macro_f1"),
        "ece": metrics.get("ece"),
    }
    return card


def _config(clf) -> dict[str, Any]:
    if hasattr(clf, "config_dict"):
        return clf.config_dict
    config = getattr(clf, "config", None)
    return config.to_dict() if hasattr(config, "to_dict") else {}


def _meta(clf, model: str) -> dict[str, Any] | None:
    meta = getattr(clf, "meta", None)
    if isinstance(meta, dict):
        return meta
    candidates = []
    source = getattr(clf, "metadata", {}).get("source") if hasattr(clf, "metadata") else None
    if "/" not in model and not model.endswith((".pt", ".onnx")):
        candidates.append(WEIGHTS_DIR / f"{model}.pt")  # a shipped model's .pt sits next to its .onnx
    if model.endswith(".pt"):
        candidates.append(Path(model))
    if source:
        candidates.append(Path(source))
    for path in candidates:
        if path.is_file():
            try:
                return read_checkpoint_meta(path)
            except Exception as exc:  # a card is a nicety: a file we cannot read leaves it out
                log.warning("cannot read the model card of %s (%s)", path, exc)
    return None


# Names a ferkit checkpoint's pickle may refer to. Anything else is refused: this reads files, it never runs them.
_TORCH_NAMES = {("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_parameter"),
                ("torch", "FloatStorage"), ("torch", "HalfStorage"), ("torch", "BFloat16Storage"),
                ("torch", "LongStorage"), ("torch", "IntStorage"), ("torch", "BoolStorage"),
                ("torch", "ByteStorage"), ("torch", "DoubleStorage")}
_PLAIN_NAMES = {("collections", "OrderedDict")}


def _no_tensor(*_args: Any) -> None:
    return None


class _MetaUnpickler(pickle.Unpickler):
    """Reads a torch zip checkpoint's ``data.pkl`` with every tensor replaced by None."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _PLAIN_NAMES:
            import collections

            return collections.OrderedDict
        if (module, name) in _TORCH_NAMES:
            return _no_tensor
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a ferkit checkpoint")

    def persistent_load(self, pid: Any) -> None:
        return None  # a tensor's storage, which stays in the archive


def read_checkpoint_meta(path: str | Path) -> dict[str, Any] | None:
    """The ``meta`` dict of a ferkit checkpoint (``torch.save``'s zip format), without torch."""
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        with archive.open(pkl) as f:
            data = _MetaUnpickler(f).load()
    meta = data.get("meta") if isinstance(data, dict) else None
    return meta if isinstance(meta, dict) else None
