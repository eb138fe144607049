"""The PyTorch backend: uint8 faces -> probabilities, with temperature, TTA and batching as the config says."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from ferkit.inference.torch_backend import TorchClassifier, classify, predict_logits, view_logits
from ferkit.labels import EMOTIONS
from ferkit.models.config import ModelConfig
from ferkit.transforms.preprocess import faces_to_tensor
from ferkit.transforms.views import tta_views

from synthetic import seeded_checkpoint

SIZE = 16


def linear_model(seed: int = 0) -> nn.Module:
    """Logits linear in the pixels: not mirror-symmetric, so every TTA view gives different logits."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, len(EMOTIONS))).eval()


def config(**kw) -> ModelConfig:
    return ModelConfig(arch="linear", input_size=SIZE, **kw)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (7, SIZE, SIZE), np.uint8)


def reference_logits(model: nn.Module, faces: np.ndarray, cfg: ModelConfig, tta: str) -> torch.Tensor:
    """Mean logits over the views, one forward pass per view."""
    with torch.no_grad():
        x = faces_to_tensor(faces, cfg)
        return torch.stack([model(v) for v in tta_views(x, tta)]).mean(0)


def test_probabilities_are_a_distribution_per_face(faces):
    probs = classify(linear_model(), faces, config())
    assert probs.shape == (7, len(EMOTIONS)) and probs.dtype == np.float32
    assert np.allclose(probs.sum(1), 1.0, atol=1e-6) and (probs > 0).all()


def test_no_faces_give_no_rows():
    assert classify(linear_model(), np.zeros((0, SIZE, SIZE), np.uint8), config()).shape == (0, len(EMOTIONS))


def test_the_temperature_divides_the_logits(faces):
    model = linear_model()
    expected = F.softmax(reference_logits(model, faces, config(), "none") / 2.5, dim=1).numpy()
    probs = classify(model, faces, config(temperature=2.5))
    assert np.allclose(probs, expected, atol=1e-6)
    assert not np.allclose(probs, classify(model, faces, config()), atol=1e-3)


@pytest.mark.parametrize("tta", ["flip", "flip_shift", "flip_crop"])
def test_tta_averages_the_logits_of_every_view(faces, tta):
    model = linear_model()
    expected = reference_logits(model, faces, config(), tta)
    assert torch.allclose(predict_logits(model, faces_to_tensor(faces, config()), tta), expected, atol=1e-5)
    probs = classify(model, faces, config(), tta=tta)
    assert np.allclose(probs, F.softmax(expected, dim=1).numpy(), atol=1e-6)
    assert not np.allclose(probs, classify(model, faces, config(), tta="none"), atol=1e-3)


def test_view_logits_has_one_row_per_view_and_view_0_is_the_plain_batch(faces):
    model = linear_model()
    x = faces_to_tensor(faces, config())
    logits = view_logits(model, x, "flip_shift")
    assert logits.shape == (10, 7, len(EMOTIONS))
    with torch.no_grad():
        assert torch.allclose(logits[0], model(x), atol=1e-5)
        assert torch.allclose(logits[1], model(x.flip(-1)), atol=1e-5)


def test_the_config_tta_applies_unless_overridden(faces):
    model = linear_model()
    flip = classify(model, faces, config(), tta="flip")
    assert np.array_equal(classify(model, faces, config(tta="flip")), flip)
    assert np.array_equal(classify(model, faces, config(tta="flip"), tta="none"), classify(model, faces, config()))


def test_batch_size_does_not_change_the_results(faces):
    model = linear_model()
    whole = classify(model, faces, config(tta="flip"))
    for batch_size in (1, 3, 7):
        assert np.allclose(classify(model, faces, config(tta="flip"), batch_size=batch_size), whole, atol=1e-6)


def test_progress_shows_a_bar_and_changes_nothing(faces, capsys):
    model = linear_model()
    quiet = classify(model, faces, config(), batch_size=2)
    assert capsys.readouterr().err == ""
    shown = classify(model, faces, config(), batch_size=2, progress=True)
    assert "classify" in capsys.readouterr().err
    assert np.array_equal(shown, quiet)


def test_a_training_model_is_put_in_eval_mode():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Dropout(0.5), nn.Linear(SIZE * SIZE, len(EMOTIONS)))
    faces = np.full((4, SIZE, SIZE), 128, np.uint8)
    probs = classify(model.train(), faces, config())
    assert not model.training
    assert np.allclose(probs, probs[0], atol=1e-6)  # identical faces, no dropout noise


def test_rgb_faces_reach_a_gray_model_as_luma(faces):
    model = linear_model()
    rgb = np.repeat(faces[..., None], 3, axis=3)
    assert np.allclose(classify(model, rgb, config()), classify(model, faces, config()), atol=1e-5)


def test_classifier_takes_its_settings_from_the_config(faces):
    cfg = config(tta="flip", crop_margin=0.1, face_crop=SIZE / 20, labels=list(EMOTIONS))
    clf = TorchClassifier(linear_model(), cfg, name="mine")
    assert (clf.input_size, clf.crop_size, clf.crop_margin, clf.tta) == (16, 20, 0.1, "flip")
    assert clf.labels == tuple(EMOTIONS) and clf.backend == "torch"
    assert clf.description == "mine (linear, torch on cpu, tta=flip)"
    assert TorchClassifier(linear_model(), cfg, tta="none").tta == "none"
    crops = np.random.default_rng(1).integers(0, 256, (5, 20, 20), np.uint8)
    assert np.allclose(clf.predict_proba(crops), classify(linear_model(), crops, cfg), atol=1e-6)


def test_classifier_loads_a_checkpoint(tmp_path: Path):
    path = seeded_checkpoint(tmp_path / "seeded.pt", input_size=40, face_crop=40 / 48, tta="flip")
    clf = TorchClassifier.load(path, device="cpu", tta="none", batch_size=2)
    assert (clf.input_size, clf.crop_size, clf.tta, clf.batch_size) == (40, 48, "none", 2)
    assert clf.description == "seeded.pt (baseline_cnn, torch on cpu, tta=none)"
    probs = clf.predict_proba(np.random.default_rng(2).integers(0, 256, (3, 48, 48), np.uint8))
    assert probs.shape == (3, len(EMOTIONS)) and np.allclose(probs.sum(1), 1.0, atol=1e-6)


class CountingModel(nn.Module):
    """Wraps a model and counts the faces it is shown, to see which stage adaptive TTA ran them through."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, x):
        self.seen += len(x)
        return self.model(x)


def test_adaptive_tta_is_flip_where_flip_is_sure_and_flip_shift_elsewhere(faces):
    model = linear_model()
    x = faces_to_tensor(faces, config())
    flip = reference_logits(model, faces, config(), "flip")
    full = reference_logits(model, faces, config(), "flip_shift")
    top = F.softmax(flip, dim=1).max(1).values
    ranked = top.sort().values
    threshold = float(ranked[3:5].mean())  # between two faces' confidences: 4 of 7 unsure, both stages run
    import ferkit.transforms.views as views

    old, views.ADAPTIVE_CONFIDENCE = views.ADAPTIVE_CONFIDENCE, threshold
    try:
        counted = CountingModel(model)
        got = predict_logits(counted, x, "adaptive")
    finally:
        views.ADAPTIVE_CONFIDENCE = old
    again = top < threshold
    assert 0 < int(again.sum()) < len(faces)
    assert torch.allclose(got[~again], flip[~again], atol=1e-5)
    assert torch.allclose(got[again], full[again], atol=1e-5)
    assert counted.seen == 2 * len(faces) + 8 * int(again.sum())  # the extra views only for the unsure faces
    # Scoring from all ten views at once (training's validation) picks the same rows.
    assert torch.allclose(views.adaptive_mean(view_logits(model, x, "flip_shift"), threshold=threshold), got, atol=1e-5)


def test_adaptive_tta_reads_calibrated_probabilities(faces):
    """The temperature decides who is unsure: a sharp one makes every face sure (flip), a flat one none."""
    model = linear_model()
    flip = classify(model, faces, config(temperature=0.001), tta="flip")
    assert np.array_equal(classify(model, faces, config(temperature=0.001), tta="adaptive"), flip)
    full = classify(model, faces, config(temperature=1000.0), tta="flip_shift")
    assert np.allclose(classify(model, faces, config(temperature=1000.0), tta="adaptive"), full, atol=1e-7)
    assert not np.allclose(flip, classify(model, faces, config(temperature=0.001), tta="flip_shift"), atol=1e-3)


def test_training_validation_scores_adaptive_tta_as_inference_runs_it():
    """best.pt is chosen by validation's TTA accuracy, so adaptive must score there what classify gives."""
    from ferkit.data.dataset import FaceDataset
    from ferkit.training.loop import validate

    rng = np.random.default_rng(10)  # a draw where adaptive's accuracy is neither flip's nor flip_shift's
    images = rng.integers(0, 256, (40, SIZE, SIZE), np.uint8)
    labels = rng.integers(0, len(EMOTIONS), 40).astype(np.int64)
    ds = FaceDataset(images, labels, np.array(["val"] * 40), np.array(["x"] * 40), EMOTIONS, "synthetic")
    model, cfg = linear_model(), config(temperature=0.05)  # sharp enough that some faces are sure, some not
    flip = classify(model, images, cfg, tta="flip")
    assert 0 < (flip.max(1) < 0.5).sum() < 40
    row = validate(model, cfg, ds, torch.device("cpu"), tta="adaptive", batch_size=16)
    accuracy = {t: (classify(model, images, cfg, tta=t).argmax(1) == labels).mean()
                for t in ("flip", "flip_shift", "adaptive")}
    assert accuracy["adaptive"] not in (accuracy["flip"], accuracy["flip_shift"])
    assert row["val_accuracy_tta"] == pytest.approx(accuracy["adaptive"])
