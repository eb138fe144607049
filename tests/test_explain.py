"""Explanations: map contracts, sanity checks (Adebayo et al. 2018), region concentration, the method table and
its options, photos (the probabilities predict states), dataset summaries, errors and the CLI."""
from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy.stats import spearmanr

from ferkit import Recognizer
from ferkit.analysis import explain_dataset, explain_image
from ferkit.analysis.explain import (
    METHODS, default_layer, explain, explain_tensor, feature_maps, gradcam, heat_shares, method_options,
    occlusion_sensitivity, saliency, smoothgrad, spatial_layers,
)
from ferkit.assets import sample_image_path
from ferkit.cli import main
from ferkit.data.dataset import FaceDataset
from ferkit.errors import FerkitError
from ferkit.models import create_model
from ferkit.models.checkpoint import ModelConfig, load_model, save_checkpoint

MAP_FUNCS = {"gradcam": gradcam, "saliency": saliency, "smoothgrad": smoothgrad, "occlusion": occlusion_sensitivity}


@pytest.fixture(scope="module")
def baseline() -> nn.Module:
    torch.manual_seed(0)
    return create_model("baseline_cnn").eval()


def _x(n: int = 3, size: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------- contracts
@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_unit_maps_at_input_size(baseline, method):
    e = explain_tensor(baseline, _x(), method)
    assert e.maps.shape == (3, 48, 48) and e.maps.dtype == np.float32
    assert e.maps.min() >= 0 and np.allclose(e.maps.reshape(3, -1).max(1), 1)
    assert e.probs.shape == (3, 7) and np.allclose(e.probs.sum(1), 1, atol=1e-5)
    assert np.array_equal(e.target, e.probs.argmax(1))  # predicted class by default


def test_model_is_left_as_found(baseline):
    model = copy.deepcopy(baseline).train()
    model.features[0].weight.requires_grad_(False)
    model.classifier[1].eval()  # mixed modes must survive too
    modes = [m.training for m in model.modules()]
    flags = [p.requires_grad for p in model.parameters()]
    for method in METHODS:
        explain_tensor(model, _x(), method)
    gradcam(model, _x(), layer="features.4")
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == flags
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._backward_hooks for m in model.modules())


def test_targets_by_name_index_alias_and_per_face(baseline):
    labels = ModelConfig("baseline_cnn").labels
    x = _x()
    assert list(explain_tensor(baseline, x, "saliency", "happy", labels=labels).target) == [3, 3, 3]
    assert list(explain_tensor(baseline, x, "saliency", "happiness", labels=labels).target) == [3, 3, 3]
    assert list(explain_tensor(baseline, x, "saliency", 5, labels=labels).target) == [5, 5, 5]
    assert list(explain_tensor(baseline, x, "gradcam", [0, 1, 2], labels=labels).target) == [0, 1, 2]
    assert not np.allclose(saliency(baseline, x, 0), saliency(baseline, x, 6))
    with pytest.raises(FerkitError, match="this model's classes: angry, disgust, fear, happy"):
        saliency(baseline, x, "joy!", labels=labels)
    with pytest.raises(FerkitError, match="out of range"):
        saliency(baseline, x, 7)


def test_gradients_work_inside_a_callers_inference_mode(baseline):
    with torch.inference_mode():  # e.g. a web handler that wraps everything in inference mode
        x = _x()
        for method in METHODS:
            assert explain_tensor(baseline, x, method).maps.shape == (3, 48, 48)


def test_unknown_method_lists_valid_ones(baseline):
    with pytest.raises(FerkitError, match="valid methods: gradcam, saliency, smoothgrad, occlusion, features"):
        explain_tensor(baseline, _x(), "lime")


# ------------------------------------------------------------------------------------------ layers
def test_gradcam_layer_default_override_and_errors(baseline):
    x = _x()
    names = [info.name for info in spatial_layers(baseline, x)]
    assert default_layer(baseline, x) == "features" == names[-1]  # last spatial output: 64 x 12 x 12
    assert not np.allclose(gradcam(baseline, x), gradcam(baseline, x, layer="features.0"))
    with pytest.raises(FerkitError, match=r"'conv9' is not a module.*features\.0, features\.1, .*features\.7"):
        gradcam(baseline, x, layer="conv9")
    with pytest.raises(FerkitError, match=r"outputs shape \(3, 128\), not a spatial map.*features\.4"):
        gradcam(baseline, x, layer="classifier.1")


def test_gradcam_of_an_ensemble_sums_every_members_map(tmp_path):
    from ferkit.models.ensemble import combine_checkpoints

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        save_checkpoint(tmp_path / f"m{seed}.pt", create_model("baseline_cnn"), ModelConfig(arch="baseline_cnn"))
        paths.append(tmp_path / f"m{seed}.pt")
    ens, _ = load_model(combine_checkpoints(paths, tmp_path / "ens.pt"))
    x = _x()
    assert default_layer(ens, x) == "members.0.features+members.1.features"
    both = gradcam(ens, x, target=2)
    np.testing.assert_allclose(both, gradcam(ens, x, target=2, layer="members.0.features+members.1.features"))
    # Each member's share, as the ensemble's answer flows through it; their sum, rescaled, is the map.
    parts = [explain_tensor(ens, x, "gradcam", target=2, layer=f"members.{i}.features") for i in (0, 1)]
    assert not np.allclose(parts[0].maps, parts[1].maps, atol=0.05)
    raw = [torch.tensor(p.maps) for p in parts]
    assert all(not np.allclose(both, p.maps, atol=0.02) for p in parts)
    assert (np.corrcoef(both.ravel(), (raw[0] + raw[1]).numpy().ravel())[0, 1]) > 0.5
    with pytest.raises(FerkitError, match="'members.2.features' is not a module"):
        gradcam(ens, x, layer="members.0.features+members.2.features")
    # Two copies of one network: equal shares, so the summed map is either member's own.
    twins, _ = load_model(combine_checkpoints([paths[0], paths[0]], tmp_path / "twins.pt"))
    np.testing.assert_allclose(gradcam(twins, x, target=2), gradcam(twins, x, target=2, layer="members.1.features"),
                               atol=1e-6)


def test_named_layer_sees_its_own_output_despite_inplace_relu(baseline):
    x = _x()
    conv = feature_maps(baseline, x, layer="features.4")  # followed by ReLU(inplace=True)
    assert conv.layer == "features.4" and conv.maps.shape == (3, 64, 24, 24)
    assert (conv.maps < 0).any()  # pre-activation values, not overwritten by the ReLU
    with torch.no_grad():  # the hook hands the network a copy: predictions are unchanged
        torch.testing.assert_close(F.softmax(baseline(x), 1).numpy(),
                                   explain_tensor(baseline, x, "features", layer="features.4").probs)


class TinyViT(nn.Module):
    """Patch embedding (the only 4-D output), then transformer blocks over tokens: no spatial layer."""

    def __init__(self, size: int = 16, patch: int = 4, dim: int = 16, classes: int = 3):
        super().__init__()
        self.patch_embed = nn.Conv2d(1, dim, patch, stride=patch)
        self.blocks = nn.TransformerEncoder(nn.TransformerEncoderLayer(dim, 2, 32, batch_first=True), 1)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)
        return self.head(self.blocks(tokens).mean(1))


def test_vision_transformer_has_no_gradcam_layer_but_other_methods_work():
    model, x = TinyViT().eval(), _x(2, 16)
    with pytest.raises(FerkitError, match="no spatial layer for Grad-CAM.*vision transformer.*saliency"):
        gradcam(model, x)
    assert saliency(model, x).shape == (2, 16, 16)
    assert occlusion_sensitivity(model, x).shape == (2, 16, 16)
    assert gradcam(model, x, layer="patch_embed").shape == (2, 16, 16)  # explicit override still allowed


def test_model_without_spatial_layers_is_refused():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 3)).eval()
    with pytest.raises(FerkitError, match="no layer with a spatial"):
        gradcam(mlp, _x(1, 8))


# ------------------------------------------------------------------------------------- occlusion
def test_occlusion_is_batch_size_invariant_and_checks_patch(baseline):
    x = _x(2)
    a = occlusion_sensitivity(baseline, x, batch_size=5)
    b = occlusion_sensitivity(baseline, x, batch_size=1000)
    np.testing.assert_allclose(a, b, atol=1e-5)
    raw = occlusion_sensitivity(baseline, x, patch=12, stride=12, normalize=False, fill=0.0)
    assert raw.min() >= 0 and raw.max() <= 1
    assert len(np.unique(raw[0])) <= 16  # 4 x 4 non-overlapping patches: piecewise constant
    with pytest.raises(FerkitError, match="patch must be"):
        occlusion_sensitivity(baseline, x, patch=60)


# ------------------------------------------------------------------- a model that looks at one region
class Gate(nn.Module):
    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, x):
        return x * self.mask


class TopLeftModel(nn.Module):
    """Hand-built: class 0's logit is the texture energy of the top-left quadrant, class 1's is constant.

    The input and the last feature map are both gated to the quadrant, and the edge filters sum to zero,
    so a flat (occluded) patch carries no energy and nothing outside the quadrant can change the output.
    """

    def __init__(self, size: int = 32):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("gate_in", self._quadrant(size))
        conv = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        with torch.no_grad():
            w = torch.randn(8, 1, 3, 3, generator=gen)
            conv.weight.copy_(w - w.mean((2, 3), keepdim=True))
        self.features = nn.Sequential(conv, nn.ReLU(), nn.MaxPool2d(2))
        self.gate = Gate(self._quadrant(size // 2))  # a module, so it is the layer Grad-CAM picks
        with torch.no_grad():  # scale so typical inputs give p(class 0) ~ 0.9: sensitive, not saturated
            self.register_buffer("ref", self._energy(torch.randn(64, 1, size, size, generator=gen)).mean())

    @staticmethod
    def _quadrant(size: int) -> torch.Tensor:
        gate = torch.zeros(1, 1, size, size)
        gate[..., : size // 2, : size // 2] = 1
        return gate

    def _energy(self, x: torch.Tensor) -> torch.Tensor:
        return self.gate(self.features(x * self.gate_in)).mean((1, 2, 3))

    def forward(self, x):
        logit = 4 * self._energy(x) / self.ref - 2
        return torch.stack([logit, torch.zeros_like(logit)], 1)


# Occlusion blurs across a boundary by up to a patch (a patch straddling it hides both sides), so some heat
# spills just outside the quadrant at default settings (measured: 92-94% inside); a patch grid aligned with
# the quadrant's edges must not spill at all.
@pytest.mark.parametrize("method,options,share", [
    ("saliency", {}, 0.9), ("smoothgrad", {}, 0.9), ("gradcam", {}, 0.9),
    ("occlusion", {}, 0.9), ("occlusion", {"patch": 4, "stride": 4}, 0.999),
])
def test_maps_concentrate_where_the_model_looks(method, options, share):
    model, x = TopLeftModel().eval(), _x(4, 32, seed=1)
    assert (model(x).argmax(1) == 0).all()
    maps = MAP_FUNCS[method](model, x, **options)
    inside = maps[:, :16, :16].sum((1, 2)) / maps.sum((1, 2))
    assert inside.min() > share, inside


# ------------------------------------------------------- sanity check: randomised weights (Adebayo 2018)
S = 24


def _blobs(n: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise plus one bright blob; the class is the quadrant holding the blob."""
    cls = torch.randint(0, 4, (n,), generator=g)
    cy = (cls // 2) * (S // 2) + 3 + torch.rand(n, generator=g) * (S // 2 - 6)
    cx = (cls % 2) * (S // 2) + 3 + torch.rand(n, generator=g) * (S // 2 - 6)
    yy, xx = torch.arange(S).view(1, -1, 1).float(), torch.arange(S).view(1, 1, -1).float()
    blob = torch.exp(-((yy - cy.view(-1, 1, 1)) ** 2 + (xx - cx.view(-1, 1, 1)) ** 2) / 8)
    x = 0.2 * torch.rand(n, S, S, generator=g) + blob
    return ((x - 0.5) / 0.5)[:, None], cls


@pytest.fixture(scope="module")
def trained_and_random():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    model = create_model("baseline_cnn", num_classes=4, input_size=S, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(20):  # a few dozen steps: accurate, not yet saturated (p ~ 1 would flatten occlusion maps)
        x, y = _blobs(64, g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x, y = _blobs(32, g)
    assert (model(x).argmax(1) == y).float().mean() > 0.9
    randomised = copy.deepcopy(model)
    torch.manual_seed(1)
    for m in randomised.modules():  # full re-initialisation, the end point of Adebayo's cascading test
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return model, randomised, x, y


def _quadrant_share(maps: np.ndarray, y: torch.Tensor) -> np.ndarray:
    shares = []
    for m, c in zip(maps, y.tolist()):
        r, q = divmod(c, 2)
        shares.append(m[r * S // 2:(r + 1) * S // 2, q * S // 2:(q + 1) * S // 2].sum() / max(m.sum(), 1e-12))
    return np.array(shares)


# A rank correlation of 1 means randomising the weights left the ordering of pixels intact (the map shows
# the input, not the model); 0 means unrelated maps. Adebayo et al. find that methods failing the test keep
# most of their ranking after randomisation, while gradients and Grad-CAM fall towards 0. Requiring the mean
# over 32 faces to stay below 0.5 (less than half the ranking survives) separates the two with a margin for
# sampling noise; measured here: Grad-CAM about -0.06, saliency 0.08, SmoothGrad 0.36, occlusion 0.27.
MAX_RANK_CORRELATION = 0.5


@pytest.mark.parametrize("method", ["gradcam", "saliency", "smoothgrad", "occlusion"])
def test_randomised_weights_change_the_maps(trained_and_random, method):
    model, randomised, x, y = trained_and_random
    fn = MAP_FUNCS[method]
    kwargs = {"generator": torch.Generator().manual_seed(0)} if method == "smoothgrad" else {}
    trained = fn(model, x, y, **kwargs)
    kwargs = {"generator": torch.Generator().manual_seed(0)} if method == "smoothgrad" else {}
    random = fn(randomised, x, y, **kwargs)
    # The trained maps are meaningful: they point at the blob's quadrant (chance: 0.25).
    valid = trained.reshape(len(y), -1).max(1) > 0
    assert valid.mean() > 0.75  # Grad-CAM's ReLU may clip a few maps to nothing
    assert np.median(_quadrant_share(trained[valid], y[valid])) > 0.5
    # A randomised map clipped to nothing keeps none of the trained ranking: it counts as correlation 0.
    rho = [spearmanr(a.ravel(), b.ravel())[0] if b.max() > 0 else 0.0
           for a, b in zip(trained[valid], random[valid])]
    assert np.mean(rho) < MAX_RANK_CORRELATION, rho


# ---------------------------------------------------------------------------------- the method table
def test_options_go_to_the_methods_that_take_them():
    chosen = ["gradcam", "occlusion", "smoothgrad", "saliency"]
    assert method_options(chosen, {"layer": "features.4", "patch": 4, "samples": None}) == {
        "gradcam": {"layer": "features.4"}, "occlusion": {"patch": 4}, "smoothgrad": {}, "saliency": {}}


def test_every_method_takes_each_option_its_table_entry_lists(baseline):
    values = {"layer": "features.4", "samples": 2, "noise": 0.1, "generator": torch.Generator().manual_seed(0),
              "patch": 12, "stride": 12, "fill": 0.0}
    for name, method in METHODS.items():
        e = explain_tensor(baseline, _x(1), name, **{o: values[o] for o in method.options})
        assert e.maps.shape == (1, 48, 48), name
    e = explain_tensor(baseline, _x(1), "occlusion", patch=12, stride=12)
    assert len(np.unique(e.maps[0])) <= 16  # 4 x 4 non-overlapping patches: the options reached the method


@pytest.mark.parametrize("method,options,message", [
    ("occlusion", {"layer": "features"}, "--layer applies to gradcam and features only, not to occlusion"),
    ("gradcam", {"patch": 4}, "--patch applies to occlusion only, not to gradcam"),
    ("saliency", {"samples": 5}, "--samples applies to smoothgrad only, not to saliency"),
    ("smoothgrad", {"samples": 0}, "--samples must be a whole number of 1 or more, got 0"),
    ("smoothgrad", {"noise": -0.1}, "--noise is a fraction of each face's value range, 0 or more"),
    ("smoothgrad", {"smaples": 3}, "unknown explanation option 'smaples'; options: fill, generator, layer"),
])
def test_an_option_the_method_does_not_take_is_refused_not_ignored(baseline, method, options, message):
    with pytest.raises(FerkitError, match=message):
        explain_tensor(baseline, _x(1), method, **options)


# ---------------------------------------------------------------------------------- high-level API
def test_explain_takes_uint8_faces_of_any_size(baseline):
    config = ModelConfig("baseline_cnn")
    faces = np.random.default_rng(0).integers(0, 256, (5, 60, 60, 3), dtype=np.uint8)
    e = explain(baseline, faces, config, "gradcam", batch_size=2)
    assert e.maps.shape == (5, 48, 48) and e.layer == "features"
    face = e.face_json(0)
    assert face["emotion"] in config.labels and len(face["map"]) == 48 and face["target"] == face["emotion"]
    truth = np.array([0, 1, 2, 3, 4])
    assert list(explain(baseline, faces, config, "saliency", truth, batch_size=2).target) == list(truth)


def test_heat_shares_use_the_mask_cuts():
    maps = np.zeros((2, 4, 6))
    maps[0, :2, :3] = 1  # all heat upper-left
    maps[1, 3, 5] = 2  # all heat lower-right
    s = heat_shares(maps)
    assert s["upper"].tolist() == [1, 0] and s["left"].tolist() == [1, 0]
    assert s["lower"].tolist() == [0, 1] and s["right"].tolist() == [0, 1]


def test_overlay_blends_on_gray_and_rgb_faces():
    from ferkit.plots.explain import overlay

    heat = np.linspace(0, 1, 48 * 48).reshape(48, 48)
    for face in (np.full((96, 96), 128, np.uint8), np.full((96, 96, 3), 128, np.uint8)):
        out = overlay(face, heat)
        assert out.shape == (96, 96, 3) and out.dtype == np.uint8
        assert not np.array_equal(out[0, 0], out[-1, -1])  # cold corner vs hot corner


# ------------------------------------------------------------------------------------------ photos
@pytest.fixture()
def checkpoint(tmp_path, baseline):
    path = tmp_path / "model.pt"
    save_checkpoint(path, baseline, ModelConfig("baseline_cnn"))
    return path


@pytest.fixture()
def tta_checkpoint(tmp_path, baseline):
    """A checkpoint that predicts with test-time augmentation and a crop margin, as the shipped models do."""
    path = tmp_path / "tta.pt"
    save_checkpoint(path, baseline, ModelConfig("baseline_cnn", tta="flip_shift", crop_margin=0.1, temperature=0.5))
    return path


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("FERKIT_OFFLINE", "1")  # never download a detector model in tests


def test_each_face_is_stated_as_predict_states_it_and_mapped_on_the_crop_it_classified(tta_checkpoint, offline):
    photo = sample_image_path()
    rec = Recognizer(model=tta_checkpoint, detector="haar", backend="torch")
    (face,) = explain_image(rec, photo, ["gradcam", "saliency"])
    assert face.face == rec.predict(photo)[0]  # box, score, emotion, probabilities: predict's, TTA included
    assert face.explanations["gradcam"].labels[face.explanations["gradcam"].target[0]] == face.face.emotion
    # The map explains one (unaugmented) view of the very crop predict classified: its probabilities are
    # predict's without TTA, and they differ from the stated ones, which is why the stated ones come from predict.
    view = face.explanations["saliency"].probs[0]
    single = Recognizer(model=tta_checkpoint, detector="haar", backend="torch", tta="none").predict(photo)[0]
    np.testing.assert_allclose(view, list(single.probs.values()), rtol=1e-5, atol=1e-6)
    assert not np.allclose(view, list(face.face.probs.values()), atol=1e-3)


def test_maps_need_the_torch_model_and_refuse_a_different_one(checkpoint, tta_checkpoint, offline):
    pytest.importorskip("onnxruntime")
    rec = Recognizer(model="fast", detector="none", backend="onnx")
    with pytest.raises(FerkitError, match="explanations run on the PyTorch model.*backend='torch'"):
        explain_image(rec, sample_image_path())
    with pytest.raises(FerkitError, match="is not the Recognizer's"):
        explain_image(rec, sample_image_path(), model=load_model(checkpoint))  # 48 px crops, fast wants others
    faces = explain_image(rec, sample_image_path(), model=load_model("fast"))  # ONNX states, torch maps
    assert faces[0].face == rec.predict(sample_image_path())[0] and faces[0].explanations["gradcam"].maps.shape[0] == 1


def _cli_json(capsys, argv: list[str]):
    rc = main(argv)
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    return json.loads(captured.out)


@pytest.mark.parametrize("model", ["tta", "default"])
def test_cli_states_exactly_the_probabilities_predict_gives(tmp_path, tta_checkpoint, capsys, offline, model):
    """The same photo and flags through `predict` and `explain`: the same faces with the same numbers, for a
    checkpoint with TTA (torch) and for a shipped model (ONNX Runtime states them, torch draws the maps)."""
    if model == "default":
        pytest.importorskip("onnxruntime")
    spec = str(tta_checkpoint) if model == "tta" else model
    common = [str(sample_image_path()), "--detector", "haar", "--model", spec, "--json"]
    predicted = _cli_json(capsys, ["predict", *common])[0]["faces"]
    explained = _cli_json(capsys, ["explain", *common, "--method", "gradcam,saliency", "--out", str(tmp_path)])
    faces = explained[0]["faces"]
    assert len(predicted) == 1
    assert [{k: face[k] for k in predicted[0]} for face in faces] == predicted
    assert faces[0]["explanations"]["gradcam"]["target"] == predicted[0]["emotion"]


def test_cli_writes_overlays_for_a_face_crop(tmp_path, checkpoint, face_png, capsys):
    out = tmp_path / "out"
    rc = main(["explain", str(face_png), "--detector", "none", "--model", str(checkpoint),
               "--method", "gradcam,saliency,occlusion,features", "--layer", "features.4", "--out", str(out)])
    assert rc == 0  # --layer goes to the methods that have layers only
    for method in ("gradcam", "saliency", "occlusion", "features"):
        assert (out / f"face_face0_{method}.png").stat().st_size > 1000
    assert "wrote 4 PNG(s) for 1 image(s)" in capsys.readouterr().out


@pytest.fixture()
def face_png(tmp_path):
    from PIL import Image

    yy, xx = np.mgrid[:64, :64]
    face = (128 + 80 * np.sin(xx / 5) * np.cos(yy / 7)).astype(np.uint8)  # any structure will do
    path = tmp_path / "face.png"
    Image.fromarray(face).save(path)
    return path


def test_cli_json_has_raw_maps_and_per_input_errors(tmp_path, checkpoint, face_png, capsys):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    rc = main(["explain", str(face_png), str(bad), "--detector", "none", "--model", str(checkpoint),
               "--target", "fear", "--json", "--out", str(tmp_path / "out")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads((tmp_path / "out" / "explanations.json").read_text())
    face = result[0]["faces"][0]
    cam = face["explanations"]["gradcam"]
    assert np.array(cam["map"]).shape == (48, 48) and cam["target"] == "fear" and cam["layer"] == "features"
    assert face["box"] == [0, 0, 64, 64] and set(face["probs"]) == set(ModelConfig("baseline_cnn").labels)
    assert "error" in result[1] and "broken.jpg" in result[1]["error"]


def test_cli_reports_a_face_under_min_face_as_predict_does_without_maps(tmp_path, checkpoint, face_png, capsys):
    common = [str(face_png), "--detector", "none", "--model", str(checkpoint), "--min-face", "100", "--json"]
    predicted = _cli_json(capsys, ["predict", *common])[0]["faces"]
    explained = _cli_json(capsys, ["explain", *common, "--out", str(tmp_path / "out")])[0]["faces"]
    assert predicted[0]["emotion"] is None
    assert explained == [{**predicted[0], "explanations": {}}]
    assert not list((tmp_path / "out").glob("*.png"))


def test_cli_explains_the_images_of_sub_folders_with_recursive(tmp_path, checkpoint, face_png, capsys):
    nested = tmp_path / "photos" / "day1"
    nested.mkdir(parents=True)
    face_png.rename(nested / "face.png")
    common = ["explain", str(tmp_path / "photos"), "--detector", "none", "--model", str(checkpoint),
              "--out", str(tmp_path / "out")]
    assert main(common) == 2 and "add --recursive" in capsys.readouterr().err
    assert main([*common, "--recursive"]) == 0 and (tmp_path / "out" / "face_face0_gradcam.png").exists()


@pytest.mark.parametrize("argv,message", [
    (["--method", "lime"], "valid methods: gradcam, saliency"),
    (["--layer", "nope"], "layers with a spatial output in BaselineCNN: features.0"),
    (["--target", "bored"], "this model's classes: angry"),
    (["--method", "occlusion", "--layer", "features.4"], "--layer applies to gradcam and features only, not to occl"),
    (["--method", "gradcam,saliency", "--patch", "4"], "--patch applies to occlusion only, not to gradcam, saliency"),
    (["--method", "occlusion", "--samples", "5"], "--samples applies to smoothgrad only, not to occlusion"),
    (["--method", "smoothgrad", "--samples", "0"], "--samples must be a whole number of 1 or more"),
    (["--method", "occlusion", "--patch", "60"], "--patch must be at most the model's input size, 48 px"),
    (["--split", "train"], "--split: for --dataset only"),
    (["--model", "model.onnx"], "is an ONNX export; heatmaps need the PyTorch model"),
    (["--detector", "yunet", "--detector-model", "missing.onnx"], "YuNet model missing.onnx not found"),
])
def test_cli_bad_options_fail_with_one_line(tmp_path, checkpoint, face_png, capsys, offline, argv, message):
    rc = main(["explain", str(face_png), "--detector", "none", "--model", str(checkpoint),
               "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_cli_on_a_photo_without_faces_reports_none(tmp_path, checkpoint, capsys):
    from PIL import Image

    photo = tmp_path / "wall.png"
    Image.fromarray(np.full((120, 160, 3), 90, np.uint8)).save(photo)
    rc = main(["explain", str(photo), "--detector", "haar", "--model", str(checkpoint), "--json",
               "--out", str(tmp_path / "out")])
    assert rc == 0 and json.loads(capsys.readouterr().out) == [{"path": str(photo), "faces": []}]


@pytest.mark.integration
def test_cli_detects_and_explains_faces_in_a_photo(tmp_path, checkpoint, media_dir, capsys, offline):
    rc = main(["explain", str(media_dir / "photos" / "multi_face.jpg"), "--detector", "haar",
               "--model", str(checkpoint), "--json", "--out", str(tmp_path / "out")])
    assert rc == 0
    faces = json.loads(capsys.readouterr().out)[0]["faces"]
    assert len(faces) >= 2
    for face in faces:
        assert len(face["box"]) == 4 and np.array(face["explanations"]["gradcam"]["map"]).shape == (48, 48)
        assert (tmp_path / "out").joinpath(face["explanations"]["gradcam"]["png"].split("/")[-1]).exists()


@pytest.mark.integration
def test_cli_takes_the_yunet_model_file_as_predict_does(tmp_path, tta_checkpoint, yunet_model, capsys, offline):
    common = [str(sample_image_path()), "--detector", "yunet", "--detector-model", str(yunet_model),
              "--model", str(tta_checkpoint), "--json"]
    predicted = _cli_json(capsys, ["predict", *common])[0]["faces"]
    explained = _cli_json(capsys, ["explain", *common, "--out", str(tmp_path)])[0]["faces"]
    assert len(predicted) == 1 and predicted[0]["landmarks"] is not None  # YuNet's 5 points: the aligned crop
    assert [{k: face[k] for k in predicted[0]} for face in explained] == predicted


# ----------------------------------------------------------------------------------------- datasets
@pytest.fixture()
def toy_dataset() -> FaceDataset:
    """Six faces of each of angry, happy, sad and contempt (not one of the model's classes), over two test splits."""
    rng = np.random.default_rng(0)
    names = ("angry", "happy", "sad", "contempt")
    labels = np.repeat(np.arange(4), 6)
    return FaceDataset(rng.integers(0, 256, (24, 48, 48), dtype=np.uint8), labels,
                       np.array(["publictest"] * 12 + ["privatetest"] * 12), np.array([f"s{i}" for i in range(24)]),
                       names, "toy")


def test_explain_dataset_averages_each_true_emotions_maps(baseline, toy_dataset):
    config = ModelConfig("baseline_cnn")
    result = explain_dataset(baseline, config, toy_dataset, ["saliency", "gradcam"], split="test", per_class=None)
    assert result.emotions == ["angry", "happy", "sad"] and result.counts == [6, 6, 6] and result.n == 18
    for j in range(3):  # contempt is skipped: the model cannot explain a class it does not know
        faces = toy_dataset.images[toy_dataset.labels == j]
        own = explain(baseline, faces, config, "saliency", np.full(6, config.labels.index(result.emotions[j])))
        np.testing.assert_allclose(result.mean_maps["saliency"][j], own.maps.mean(0), atol=1e-6)
    assert result.mean_faces.shape == (3, 48, 48) and result.mean_faces.dtype == np.uint8
    regions = result.regions
    assert [(r["method"], r["emotion"], r["n"]) for r in regions] == [
        (m, e, 6) for m in ("saliency", "gradcam") for e in ("angry", "happy", "sad")]
    assert all(abs(r["upper"] + r["lower"] - 1) < 1e-3 for r in regions)


def test_explain_dataset_draws_per_class_faces_reproducibly_and_refuses_bad_requests(baseline, toy_dataset):
    config = ModelConfig("baseline_cnn")
    a = explain_dataset(baseline, config, toy_dataset, ["saliency"], split="publictest", per_class=4)
    b = explain_dataset(baseline, config, toy_dataset, ["saliency"], split="publictest", per_class=4)
    assert a.emotions == ["angry", "happy"] and a.counts == [4, 4]
    np.testing.assert_array_equal(a.mean_maps["saliency"], b.mean_maps["saliency"])
    with pytest.raises(FerkitError, match="--layer applies to gradcam and features only, not to occlusion"):
        explain_dataset(baseline, config, toy_dataset, ["occlusion"], layer="features")
    only_contempt = toy_dataset.subset(toy_dataset.labels == 3)
    with pytest.raises(FerkitError, match="has no faces of the model's classes"):
        explain_dataset(baseline, config, only_contempt, ["saliency"])


def test_cli_dataset_writes_what_explain_dataset_returns(tmp_path, baseline, checkpoint, toy_dataset, monkeypatch,
                                                         capsys):
    import ferkit.data

    monkeypatch.setattr(ferkit.data, "load_dataset", lambda path, **kw: toy_dataset)
    out = tmp_path / "out"
    rc = main(["explain", "--dataset", "toy", "--split", "test", "--limit", "4", "--model", str(checkpoint),
               "--method", "gradcam,saliency", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "upper" in printed and "happy" in printed and "12 faces of test" in printed
    assert (out / "summary.png").stat().st_size > 1000
    expected = explain_dataset(baseline, ModelConfig("baseline_cnn"), toy_dataset, ["gradcam", "saliency"],
                               split="test", per_class=4)
    rows = list(csv.DictReader((out / "regions.csv").open()))
    assert rows == [{k: str(v) for k, v in r.items()} for r in expected.regions]
    maps = np.load(out / "mean_maps.npz")
    assert list(maps["emotions"]) == expected.emotions
    for method in ("gradcam", "saliency"):
        np.testing.assert_allclose(maps[method], expected.mean_maps[method], atol=1e-6)

    rc = main(["explain", "--dataset", "toy", "--split", "test", "--limit", "4", "--model", str(checkpoint),
               "--method", "saliency", "--json", "--out", str(out)])
    report = json.loads(capsys.readouterr().out)
    assert rc == 0 and report["n"] == 12 and report["methods"] == ["saliency"]
    assert report["files"]["summary"] == str(out / "summary.png")


@pytest.mark.parametrize("argv,message", [
    (["--target", "happy"], "--target does not apply to --dataset"),
    (["--detector", "haar"], "--detector: for photos only"),
    (["--recursive"], "--recursive: for photos only"),
    (["--method", "saliency", "--layer", "features"], "--layer applies to gradcam and features only"),
    (["--limit", "-1"], "--limit must be 0 (all) or a positive number"),
])
def test_cli_dataset_refuses_options_that_do_not_apply(tmp_path, checkpoint, capsys, argv, message):
    rc = main(["explain", "--dataset", "toy", "--model", str(checkpoint), "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
