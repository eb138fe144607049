"""The model zoo: every architecture builds, trains and runs at 48x48 grey faces and at its default size;
torchvision-layout models carry torchvision's state-dict names; pretrained files load and adapt; freezing
and profiling work; `ferkit models --json` lists them."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from ferkit.errors import ModelError
from ferkit.models import create_model, get_entry, list_models
from ferkit.models.pretrained import freeze_blocks, imagenet_normalization, layer_groups, load_pretrained
from ferkit.models.profile import count_flops, count_parameters, profile_model

ZOO = ["vgg_fer", "vgg16", "vgg16_bn", "resnet18", "resnet50", "densenet121", "mobilenet_v2",
       "efficientnet_b0", "inception_v3", "vit_b_16", "vit_b_32", "mobilenet_attention"]
TORCHVISION = ZOO[1:-1]


def _bn_only_train(model: nn.Module) -> nn.Module:
    """Deterministic training forward: batch norm uses batch statistics, dropout and drop-path are off."""
    model.eval()
    for m in model.modules():
        if isinstance(m, _BatchNorm):
            m.train()
    return model


@pytest.mark.parametrize("name", ZOO)
def test_builds_and_trains_at_48x48_grey(name):
    torch.manual_seed(0)
    model = _bn_only_train(create_model(name, num_classes=7, in_chans=1, input_size=48))
    x, y = torch.randn(4, 1, 48, 48), torch.tensor([0, 1, 2, 3])
    out = model(x)
    assert out.shape == (4, 7)
    loss = nn.functional.cross_entropy(out, y)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    torch.optim.SGD(model.parameters(), lr=0.005).step()
    with torch.no_grad():  # one small step down the gradient lowers the loss on the same batch
        assert nn.functional.cross_entropy(model(x), y) < loss
    model.eval()
    with torch.no_grad():
        assert model(x[:1]).shape == (1, 7)


@pytest.mark.parametrize("name", ZOO)
@pytest.mark.parametrize("size", ["default", 197])
def test_builds_at_transfer_sizes(name, size):
    # On the meta device shapes propagate without computing, so big nets at 224/299 cost nothing here.
    size = get_entry(name).default_input_size if size == "default" else size
    with torch.device("meta"):
        model = create_model(name, num_classes=7, in_chans=1, input_size=size).eval()
        assert model(torch.empty(2, 1, size, size)).shape == (2, 7)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "efficientnet_b0", "inception_v3", "vit_b_16"])
def test_real_forward_at_default_size(name):
    size = get_entry(name).default_input_size
    model = create_model(name, num_classes=7, in_chans=1).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, size, size))
    assert out.shape == (1, 7) and torch.isfinite(out).all()


def test_registry_defaults():
    assert get_entry("vgg_fer").default_input_size == 48
    assert get_entry("inception_v3").default_input_size == 299
    for name in ["vgg16", "vgg16_bn", "resnet18", "resnet50", "densenet121", "mobilenet_v2", "efficientnet_b0",
                 "vit_b_16", "vit_b_32"]:
        assert get_entry(name).default_input_size == 224
    assert set(ZOO) <= {e.name for e in list_models()}


@pytest.mark.parametrize("name,params", [("fernet_s", 314_319), ("fernet", 1_549_847), ("fernet_m", 3_323_959),
                                         ("fernet_l", 6_485_679)])
def test_fernet_family_sizes_at_the_shipped_40x40_input(name, params):
    # The shipped models' parameter counts (MODEL_CARD.md); global pooling makes any input size work.
    model = create_model(name, num_classes=7, in_chans=1, input_size=40).eval()
    assert count_parameters(model) == params
    with torch.no_grad():
        assert model(torch.randn(2, 1, 40, 40)).shape == (2, 7)


def test_vgg_fer_is_the_studies_network():
    model = create_model("vgg_fer")
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.features) == 8
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 4
    assert [m.out_features for m in model.modules() if isinstance(m, nn.Linear)] == [4096, 7]
    assert model.recommended_weight_decay > 0


# --- torchvision state-dict layout --------------------------------------------------------------------------

# Entry counts follow from torchvision's module structure: each BatchNorm contributes 5 entries (weight, bias,
# running_mean, running_var, num_batches_tracked), each conv 1 (no bias) and each linear 2.
# resnet18: stem 6 + 8 blocks x 12 + 3 downsamples x 6 + fc 2 = 122; inception_v3: 94 conv+BN units x 6 + fc 2
# = 566 (580 with the auxiliary head's two units and fc); vit_b_16: 4 + 12 layers x 12 + ln 2 + head 2 = 152.
EXPECTED_COUNTS = {"resnet18": 122, "resnet50": 320, "vgg16": 32, "vgg16_bn": 97, "densenet121": 727,
                   "mobilenet_v2": 314, "efficientnet_b0": 360, "inception_v3": 566, "vit_b_16": 152}
# torchvision's ImageNet models with 3 channels and 1000 classes (their published num_params).
TORCHVISION_PARAMS = {"vgg16": 138_357_544, "vgg16_bn": 138_365_992, "resnet18": 11_689_512,
                      "resnet50": 25_557_032, "densenet121": 7_978_856, "mobilenet_v2": 3_504_872,
                      "efficientnet_b0": 5_288_548, "vit_b_16": 86_567_656, "vit_b_32": 88_224_232}
KNOWN_KEYS = {
    "vgg16": ["features.0.weight", "features.28.bias", "classifier.0.weight", "classifier.6.bias"],
    "vgg16_bn": ["features.1.running_var", "features.41.weight", "classifier.3.weight"],
    "resnet18": ["conv1.weight", "bn1.num_batches_tracked", "layer1.0.conv1.weight", "layer2.0.downsample.0.weight",
                 "layer4.1.bn2.running_mean", "fc.weight"],
    "resnet50": ["layer1.0.conv3.weight", "layer3.5.bn3.bias", "layer4.0.downsample.1.running_var"],
    "densenet121": ["features.conv0.weight", "features.denseblock1.denselayer1.norm1.weight",
                    "features.denseblock4.denselayer16.conv2.weight", "features.transition3.conv.weight",
                    "features.norm5.running_mean", "classifier.weight"],
    "mobilenet_v2": ["features.0.0.weight", "features.1.conv.0.0.weight", "features.1.conv.1.weight",
                     "features.2.conv.3.running_var", "features.18.1.weight", "classifier.1.weight"],
    "efficientnet_b0": ["features.0.0.weight", "features.1.0.block.0.0.weight", "features.1.0.block.1.fc1.weight",
                        "features.2.0.block.2.fc2.bias", "features.2.0.block.3.1.weight", "features.8.0.weight",
                        "classifier.1.weight"],
    "inception_v3": ["Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch1x1.conv.weight",
                     "Mixed_6e.branch7x7dbl_5.bn.running_var", "Mixed_7c.branch3x3dbl_3b.conv.weight", "fc.weight"],
    "vit_b_16": ["class_token", "conv_proj.weight", "encoder.pos_embedding",
                 "encoder.layers.encoder_layer_0.ln_1.weight",
                 "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
                 "encoder.layers.encoder_layer_11.self_attention.out_proj.bias",
                 "encoder.layers.encoder_layer_5.mlp.3.weight", "encoder.ln.bias", "heads.head.weight"],
}


def _imagenet_model(name: str, input_size: int | None = None, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, num_classes=1000, in_chans=3, input_size=input_size, **kwargs)


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_layout(name):
    model = _imagenet_model(name)
    keys = model.state_dict().keys()
    if name in EXPECTED_COUNTS:
        assert len(keys) == EXPECTED_COUNTS[name]
    if name in TORCHVISION_PARAMS:
        assert count_parameters(model) == TORCHVISION_PARAMS[name]
    assert set(KNOWN_KEYS.get(name, [])) <= set(keys)
    # Small inputs change strides, never parameter names or shapes: ImageNet weights fit at 48 px too.
    small = _imagenet_model(name, input_size=48)
    big_shapes = {k: v.shape for k, v in model.state_dict().items() if k != "encoder.pos_embedding"}
    small_shapes = {k: v.shape for k, v in small.state_dict().items() if k != "encoder.pos_embedding"}
    assert small_shapes == big_shapes


def test_inception_aux_head_matches_torchvision():
    model = _imagenet_model("inception_v3", aux_logits=True)
    assert count_parameters(model) == 27_161_264
    assert len(model.state_dict()) == 580
    assert "AuxLogits.fc.weight" in model.state_dict()


def test_inception_aux_logits_in_training_only():
    model = create_model("inception_v3", input_size=48, aux_logits=True)
    x = torch.randn(2, 1, 48, 48)
    logits, aux = model.train()(x)
    assert logits.shape == aux.shape == (2, 7)
    assert model.eval()(x).shape == (2, 7)


def test_vit_grid_follows_input_size():
    with torch.device("meta"):
        assert create_model("vit_b_16", input_size=48).encoder.pos_embedding.shape == (1, 3 * 3 + 1, 768)
        assert create_model("vit_b_32", input_size=48).encoder.pos_embedding.shape == (1, 2 * 2 + 1, 768)
        assert create_model("vit_b_16", input_size=197).encoder.pos_embedding.shape == (1, 13 * 13 + 1, 768)
    assert _imagenet_model("vit_b_16").encoder.pos_embedding.shape == (1, 14 * 14 + 1, 768)
    model = create_model("vit_b_32", input_size=48).eval()
    with torch.no_grad():  # a size other than the constructed one interpolates the embeddings on the fly
        assert model(torch.randn(1, 1, 96, 96)).shape == (1, 7)


# --- pretrained loading ---------------------------------------------------------------------------------------

def _save_imagenet(tmp_path, name: str, wrap: str | None = None, **kwargs) -> tuple[dict, object]:
    torch.manual_seed(1)
    state = create_model(name, num_classes=1000, in_chans=3, input_size=48, **kwargs).state_dict()
    path = tmp_path / f"{name}.pth"
    torch.save({wrap: state} if wrap else state, path)
    return state, path


@pytest.mark.parametrize("wrap", [None, "state_dict", "model"])
def test_load_pretrained_grey_and_new_classes(tmp_path, wrap):
    src, path = _save_imagenet(tmp_path, "resnet18", wrap)
    model = create_model("resnet18", num_classes=7, in_chans=1, input_size=48)
    fresh_fc = model.fc.weight.detach().clone()
    report = load_pretrained(model, path, in_chans=1, num_classes=7)
    assert torch.allclose(model.conv1.weight, src["conv1.weight"].sum(dim=1, keepdim=True))
    assert torch.equal(model.layer3[1].conv2.weight, src["layer3.1.conv2.weight"])
    assert torch.equal(model.bn1.running_var, src["bn1.running_var"])
    assert torch.equal(model.fc.weight, fresh_fc)  # the 7-class head keeps its own initialisation
    assert report.adapted == ["conv1.weight"]
    assert sorted(report.reinitialised) == ["fc.bias", "fc.weight"]
    assert len(report.loaded) == 122 - 3


def test_load_pretrained_other_channel_counts(tmp_path):
    src, path = _save_imagenet(tmp_path, "mobilenet_v2")
    model = create_model("mobilenet_v2", num_classes=1000, in_chans=2, input_size=48)
    load_pretrained(model, path)
    w = src["features.0.0.weight"]
    assert torch.allclose(model.features[0][0].weight, w[:, :2] * 1.5)
    assert torch.equal(model.classifier[1].weight, src["classifier.1.weight"])  # same class count: kept


def test_load_pretrained_mobilenet_attention_from_mobilenet_v2(tmp_path):
    src, path = _save_imagenet(tmp_path, "mobilenet_v2")
    model = create_model("mobilenet_attention", num_classes=7, in_chans=1, input_size=48)
    report = load_pretrained(model, path, in_chans=1, num_classes=7)
    assert torch.equal(model.features[5].conv[1][0].weight, src["features.5.conv.1.0.weight"])
    assert "classifier.1.weight" in report.dropped
    assert any(k.startswith("attention.") for k in report.reinitialised)


def test_load_pretrained_densenet_legacy_keys(tmp_path):
    torch.manual_seed(2)
    state = create_model("densenet121", num_classes=1000, in_chans=3, input_size=48).state_dict()
    # torchvision's published DenseNet files spell "norm1" as "norm.1"; older files lack the BN counters.
    legacy = {k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2."): v for k, v in state.items()
              if not k.endswith("num_batches_tracked")}
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    torch.save(legacy, tmp_path / "densenet121.pth")
    model = create_model("densenet121", num_classes=7, in_chans=1, input_size=48)
    load_pretrained(model, tmp_path / "densenet121.pth")
    assert torch.equal(model.features.denseblock1.denselayer1.norm1.weight,
                       state["features.denseblock1.denselayer1.norm1.weight"])


def test_load_pretrained_vit_interpolates_position_embeddings(tmp_path):
    from ferkit.models.vit import VisionTransformer

    torch.manual_seed(3)
    tiny = dict(patch_size=16, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64)
    src = VisionTransformer(**tiny, num_classes=1000, in_chans=3, input_size=224).state_dict()
    torch.save(src, tmp_path / "vit.pth")
    model = VisionTransformer(**tiny, num_classes=7, in_chans=1, input_size=48)
    report = load_pretrained(model, tmp_path / "vit.pth", in_chans=1, num_classes=7)
    pos = model.encoder.pos_embedding
    assert pos.shape == (1, 10, 32)
    assert torch.equal(pos[:, 0], src["encoder.pos_embedding"][:, 0])  # the class token's embedding is kept
    # Interpolation with aligned corners keeps the grid's corner embeddings exactly.
    assert torch.allclose(pos[0, 1], src["encoder.pos_embedding"][0, 1], atol=1e-5)
    assert torch.allclose(pos[0, 9], src["encoder.pos_embedding"][0, 196], atol=1e-5)
    assert set(report.adapted) == {"encoder.pos_embedding", "conv_proj.weight"}
    assert sorted(report.reinitialised) == ["heads.head.bias", "heads.head.weight"]
    assert model(torch.randn(2, 1, 48, 48)).shape == (2, 7)


def test_load_pretrained_inception_drops_aux_head(tmp_path):
    _, path = _save_imagenet(tmp_path, "inception_v3", aux_logits=True)
    model = create_model("inception_v3", num_classes=7, in_chans=1, input_size=48)
    report = load_pretrained(model, path, in_chans=1, num_classes=7)
    assert report.dropped and all(k.startswith("AuxLogits.") for k in report.dropped)


def test_load_pretrained_mismatch_names_keys(tmp_path):
    _, path = _save_imagenet(tmp_path, "resnet18")
    model = create_model("resnet50", num_classes=7, in_chans=1, input_size=48)
    with pytest.raises(ModelError, match=r"missing keys .*layer1\.0\.conv3\.weight") as err:
        load_pretrained(model, path)
    assert "shape mismatches" in str(err.value) and str(path) in str(err.value)


def test_load_pretrained_bad_files(tmp_path):
    model = create_model("resnet18", input_size=48)
    with pytest.raises(ModelError, match="not found"):
        load_pretrained(model, tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="not a readable weights file") as err:
        load_pretrained(model, tmp_path / "junk.pth")
    assert "weights_only" not in str(err.value)  # torch's advice to load unsafely is never passed on
    import pickle

    (tmp_path / "object.pth").write_bytes(pickle.dumps(ModelError("a pickled object")))
    with pytest.raises(ModelError, match="not a readable weights file") as err:
        load_pretrained(model, tmp_path / "object.pth")
    assert "weights_only" not in str(err.value)
    torch.save({"epoch": 3}, tmp_path / "meta.pth")
    with pytest.raises(ModelError, match="does not hold a state dict"):
        load_pretrained(model, tmp_path / "meta.pth")
    _, path = _save_imagenet(tmp_path, "resnet18")
    with pytest.raises(ModelError, match="in_chans=3"):
        load_pretrained(model, path, in_chans=3)


def test_imagenet_normalization():
    mean, std = imagenet_normalization(1)
    assert mean == [pytest.approx(0.449)] and std == [pytest.approx(0.226)]
    assert imagenet_normalization(3)[0] == [0.485, 0.456, 0.406]


# --- freezing -------------------------------------------------------------------------------------------------

def test_freeze_blocks_keeps_batch_norm_trainable():
    model = create_model("resnet18", input_size=48)
    frozen = freeze_blocks(model, 2)  # stem + layer1
    assert "conv1.weight" in frozen and "layer1.1.conv2.weight" in frozen
    assert not model.conv1.weight.requires_grad and not model.layer1[0].conv1.weight.requires_grad
    assert model.bn1.weight.requires_grad and model.layer1[0].bn1.bias.requires_grad
    assert model.layer2[0].conv1.weight.requires_grad and model.fc.weight.requires_grad
    # Training still runs and frozen weights do not move.
    before = model.conv1.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.randn(2, 1, 48, 48)).sum().backward()
    opt.step()
    assert torch.equal(model.conv1.weight, before)


def test_freeze_blocks_on_every_zoo_model():
    for name in ["vgg_fer", "mobilenet_attention", "baseline_cnn"]:
        model = create_model(name, input_size=48)
        groups = layer_groups(model)
        freeze_blocks(model, len(groups) - 1)
        head = [p for n, p in model.named_parameters() if any(n.startswith(g + ".") for g in groups[-1])]
        assert head and all(p.requires_grad for p in head)
    with torch.device("meta"):
        for name in TORCHVISION:
            model = create_model(name, input_size=48)
            assert freeze_blocks(model, 1)


def test_freeze_blocks_baseline_falls_back_to_layers():
    model = create_model("baseline_cnn")
    assert layer_groups(model) == [["features.0"], ["features.4"], ["classifier.1"], ["classifier.4"]]
    freeze_blocks(model, 1)
    assert not model.features[0].weight.requires_grad and model.features[4].weight.requires_grad
    with pytest.raises(ModelError, match="give 0 to 3"):
        freeze_blocks(model, 4)


def test_freeze_blocks_vit_stem_includes_tokens():
    with torch.device("meta"):
        model = create_model("vit_b_32", input_size=48)
    frozen = freeze_blocks(model, 1)
    assert {"class_token", "encoder.pos_embedding", "conv_proj.weight"} <= set(frozen)


# --- profiling and the CLI -------------------------------------------------------------------------------------

def test_count_parameters_and_flops():
    model = create_model("baseline_cnn")
    assert count_parameters(model) == 1_199_495
    # conv1 48*48*32*9 MACs, conv2 24*24*64*32*9, dense 9216*128 and 128*7, all x2.
    macs = 48 * 48 * 32 * 9 + 24 * 24 * 64 * 32 * 9 + 9216 * 128 + 128 * 7
    assert count_flops(model, 1, 48) == 2 * macs
    assert model.training  # restored after counting
    assert profile_model("baseline_cnn").flops == 2 * macs


def test_vit_flops_count_attention_on_cpu_and_meta():
    from ferkit.models.vit import VisionTransformer

    model = VisionTransformer(16, 1, 2, 32, 64, num_classes=7, in_chans=1, input_size=48)
    tokens, dim = 10, 32
    linear = 2 * tokens * (dim * 3 * dim + dim * dim + 2 * dim * 64) + 2 * 9 * 256 * dim + 2 * dim * 7
    attention = 2 * 2 * tokens * tokens * dim
    assert count_flops(model, 1, 48) == linear + attention


@pytest.mark.slow
def test_cli_models_json(capsys):
    from ferkit.cli import main

    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert set(ZOO) | {"baseline_cnn"} <= set(rows)
    assert rows["baseline_cnn"]["params"] == 1_199_495 and rows["baseline_cnn"]["default_input_size"] == 48
    assert rows["vit_b_16"]["default_input_size"] == 224 and rows["vit_b_16"]["gflops"] > 30
    assert rows["resnet50"]["gflops_48"] > 0
    assert all(r["description"] for r in rows.values())


def test_cli_models_table_and_unknown_name(capsys):
    from ferkit.cli import main

    assert main(["models", "baseline_cnn"]) == 0
    assert "1,199,495" in capsys.readouterr().out
    assert main(["models", "no_such_net"]) == 2
    assert "known models" in capsys.readouterr().err
