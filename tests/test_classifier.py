"""Choosing the classifier backend, and what load_classifier accepts."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch.nn as nn

import ferkit.inference.classifier
from ferkit.errors import FerkitError
from ferkit.inference.classifier import load_classifier, resolve_backend
from ferkit.labels import EMOTIONS
from ferkit.models.config import ModelConfig


class ReadyClassifier:
    labels = tuple(EMOTIONS)
    input_size = crop_size = 48
    crop_margin = 0.0
    tta = "none"
    description = "ready"

    def predict_proba(self, faces: np.ndarray) -> np.ndarray:
        return np.full((len(faces), len(self.labels)), 1 / len(self.labels), np.float32)


def test_importing_the_module_imports_no_backend():
    code = ("import sys, ferkit.inference.classifier; "
            "assert not {'torch', 'onnxruntime'} & set(sys.modules), 'a backend was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_an_explicit_backend_is_taken_as_given(backend):
    for model in ("default", "runs/best.pt", "model.onnx"):
        assert resolve_backend(model, backend) == backend


@pytest.mark.parametrize("model, device, expected", [
    ("model.onnx", "auto", "onnx"),
    (Path("exports/model.onnx"), "cuda", "onnx"),  # ONNX Runtime is the only runtime for an .onnx file
    ("default", "auto", "onnx"),                   # shipped with its .onnx twin: the quick start
    ("fast", "cpu", "onnx"),
    ("default", "cuda", "torch"),                  # GPUs run on torch
    ("default", "cuda:0", "torch"),
    ("./default", "auto", "torch"),                # a path, not the shipped name
    ("runs/best.pt", "auto", "torch"),
    ("no-such-shipped-name", "auto", "torch"),
])
def test_auto_runs_onnx_files_and_shipped_models_on_cpu_on_onnx_runtime(model, device, expected):
    assert resolve_backend(model, "auto", device) == expected


def test_auto_runs_in_memory_models_on_torch():
    assert resolve_backend((nn.Linear(2, 2), ModelConfig(arch="linear"))) == "torch"
    assert resolve_backend(ReadyClassifier()) == "torch"


def test_auto_needs_the_shipped_onnx_file_and_onnxruntime(tmp_path, monkeypatch):
    monkeypatch.setattr(ferkit.inference.classifier, "WEIGHTS_DIR", tmp_path)  # a .pt-only installation
    assert resolve_backend("default") == "torch"
    (tmp_path / "default.onnx").write_bytes(b"")
    assert resolve_backend("default") == "onnx"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert resolve_backend("default") == "torch"


def test_an_unknown_backend_is_refused_with_the_choices():
    with pytest.raises(FerkitError, match=r"^unknown backend 'tflite'; choose one of auto, torch, onnx$"):
        resolve_backend("default", "tflite")


def test_a_ready_classifier_is_used_as_it_is():
    ready = ReadyClassifier()
    assert load_classifier(ready) is ready
    assert load_classifier(ready, backend="onnx", tta="flip") is ready
    with pytest.raises(FerkitError, match="unknown TTA mode 'mirror'"):
        load_classifier(ready, tta="mirror")
    with pytest.raises(FerkitError, match="unknown backend 'tpu'"):
        load_classifier(ready, backend="tpu")


def test_a_module_and_config_pair_runs_on_torch():
    net = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16, len(EMOTIONS))).train()
    config = ModelConfig(arch="linear", input_size=16, tta="flip", crop_margin=0.2)
    clf = load_classifier((net, config), device="cpu", batch_size=5)
    assert clf.backend == "torch" and clf.model is net and not net.training
    assert (clf.tta, clf.crop_margin, clf.crop_size, clf.batch_size) == ("flip", 0.2, 16, 5)
    assert clf.description == "Sequential (linear, torch on cpu, tta=flip)"
    assert load_classifier((net, config), device="cpu", tta="none").tta == "none"
    probs = clf.predict_proba(np.zeros((3, 16, 16), np.uint8))
    assert probs.shape == (3, len(EMOTIONS)) and np.allclose(probs.sum(1), 1.0, atol=1e-6)


def test_shipped_models_load_on_either_backend():
    on_onnx = load_classifier("fast", device="cpu")
    on_torch = load_classifier("fast", backend="torch", device="cpu")
    assert (on_onnx.backend, on_torch.backend) == ("onnx", "torch")
    assert on_onnx.labels == on_torch.labels and on_onnx.crop_size == on_torch.crop_size == 40
    faces = np.random.default_rng(0).integers(0, 256, (4, 40, 40), np.uint8)
    p_onnx, p_torch = on_onnx.predict_proba(faces), on_torch.predict_proba(faces)
    assert np.array_equal(p_onnx.argmax(1), p_torch.argmax(1))
    # An INT8 twin differs from the float weights by a little; a float one by rounding only.
    assert np.abs(p_onnx - p_torch).max() < (0.05 if on_onnx.quantized else 1e-3)


def test_torch_refuses_an_onnx_file_and_says_how_to_run_it():
    with pytest.raises(FerkitError, match=r"^model.onnx is an ONNX file; use backend='onnx' \(--backend onnx\)"):
        load_classifier("model.onnx", backend="torch")
