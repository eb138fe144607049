"""Ensembles: one checkpoint whose probabilities are the mean of its members', usable wherever a model is."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ferkit.models.checkpoint import ModelConfig, load_checkpoint, load_model, save_checkpoint
from ferkit.cli import main
from ferkit.models.ensemble import combine_checkpoints
from ferkit.errors import ModelError
from ferkit.inference.torch_backend import classify
from ferkit.models import create_model


def member(path: Path, arch: str, seed: int, **config) -> Path:
    torch.manual_seed(seed)
    model = create_model(arch, input_size=config.get("input_size", 48))
    for m in model.modules():  # non-trivial batch-norm statistics, so eval mode differs from identity
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    save_checkpoint(path, model, ModelConfig(arch=arch, **config), meta={"command": f"ferkit train --seed {seed}"})
    return path


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("members")
    # Different architectures, temperatures and normalisations: the ensemble must honour each member's own.
    return [member(d / "a.pt", "fernet_s", 0, temperature=0.7, tta="flip"),
            member(d / "b.pt", "baseline_cnn", 1, temperature=1.3, mean=[0.4], std=[0.25])]


def probs(spec: Path, faces: np.ndarray, tta: str | None = "none") -> np.ndarray:
    model, config = load_model(spec)
    return classify(model, faces, config, tta=tta)


@pytest.fixture(scope="module")
def faces() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (12, 48, 48), dtype=np.uint8)


def test_probabilities_are_the_mean_of_the_members(members, faces, tmp_path):
    out = combine_checkpoints(members, tmp_path / "ens.pt")
    model, config = load_model(out)
    assert config.arch == "ensemble" and config.tta == "flip" and config.temperature == 1.0
    expected = np.mean([probs(m, faces) for m in members], axis=0)
    got = classify(model, faces, config, tta="none")
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert not np.allclose(got, probs(members[0], faces), atol=1e-3)


def test_meta_records_the_members(members, tmp_path):
    meta = load_checkpoint(combine_checkpoints(members, tmp_path / "ens.pt"))["meta"]
    assert meta["command"].startswith("ferkit ensemble ")
    assert [m["source"] for m in meta["members"]] == [str(m) for m in members]
    assert meta["members"][1]["command"] == "ferkit train --seed 1"


def test_half_precision_file_is_smaller_and_predicts_the_same(members, faces, tmp_path):
    full = combine_checkpoints(members, tmp_path / "full.pt")
    half = combine_checkpoints(members, tmp_path / "half.pt", tta="none", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    state = load_checkpoint(half)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    model, config = load_model(half)
    assert next(model.parameters()).dtype == torch.float32 and config.tta == "none"
    p_full, p_half = probs(full, faces), classify(model, faces, config)
    assert np.abs(p_full - p_half).max() < 5e-3


def test_members_must_see_the_same_faces(members, tmp_path):
    other = member(tmp_path / "c.pt", "fernet_s", 2, input_size=40)
    with pytest.raises(ModelError, match="input_size=40"):
        combine_checkpoints([members[0], other], tmp_path / "ens.pt")
    with pytest.raises(ModelError, match="at least two"):
        combine_checkpoints(members[:1], tmp_path / "ens.pt")
    assert not (tmp_path / "ens.pt").exists()


def test_cli_writes_an_ensemble_that_exports_to_onnx(members, faces, tmp_path, capsys):
    out = tmp_path / "ens.pt"
    assert main(["ensemble", *map(str, members), "--out", str(out), "--tta", "none"]) == 0
    assert "2 members" in capsys.readouterr().err
    from ferkit.inference.export import export_onnx
    from ferkit.inference.onnx_backend import OnnxClassifier

    onnx_path = export_onnx(out, tmp_path / "ens.onnx")
    p_onnx = OnnxClassifier(onnx_path).predict_proba(faces)
    p_torch = probs(out, faces, tta=None)
    assert np.abs(p_onnx - p_torch).max() < 1e-4


def test_cli_reports_a_missing_member(members, tmp_path, capsys):
    assert main(["ensemble", str(members[0]), str(tmp_path / "nope.pt"), "--out", str(tmp_path / "e.pt")]) == 2
    assert "nope.pt" in capsys.readouterr().err


@pytest.fixture(scope="module")
def fine_tunes(tmp_path_factory) -> list[Path]:
    d = tmp_path_factory.mktemp("fine_tunes")
    return [member(d / "base.pt", "fernet_s", 3, tta="flip"), member(d / "tuned.pt", "fernet_s", 4)]


def test_weight_average_is_one_network_of_the_mixed_weights(fine_tunes, faces, tmp_path):
    from ferkit.models.ensemble import average_weights

    out = average_weights(fine_tunes, tmp_path / "wise.pt", mix=[0.75, 0.25])
    ckpt = load_checkpoint(out)
    assert ckpt["config"]["arch"] == "fernet_s" and ckpt["config"]["tta"] == "flip"
    a, b = (load_checkpoint(f)["state_dict"] for f in fine_tunes)
    for key, value in ckpt["state_dict"].items():
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * a[key] + 0.25 * b[key], rtol=1e-5, atol=1e-6)
        else:
            assert torch.equal(value, a[key])
    assert ckpt["meta"]["command"].startswith("ferkit ensemble --weight-average --mix 0.75,0.25 ")
    assert [m["share"] for m in ckpt["meta"]["members"]] == [0.75, 0.25]
    p = probs(out, faces)
    assert not np.allclose(p, probs(fine_tunes[0], faces), atol=1e-3)
    # All of the first member is the first member: same predictions to float precision.
    whole = average_weights(fine_tunes, tmp_path / "first.pt", mix=[1.0, 0.0], tta="none")
    np.testing.assert_allclose(probs(whole, faces), probs(fine_tunes[0], faces), atol=1e-6)
    assert load_checkpoint(whole)["config"]["tta"] == "none"


def test_weight_average_refuses_other_architectures_and_bad_shares(fine_tunes, members, tmp_path):
    from ferkit.models.ensemble import average_weights

    with pytest.raises(ModelError, match="one architecture"):
        average_weights([fine_tunes[0], members[1]], tmp_path / "x.pt")
    with pytest.raises(ModelError, match="sum to 1"):
        average_weights(fine_tunes, tmp_path / "x.pt", mix=[0.7, 0.7])
    with pytest.raises(ModelError, match="2 checkpoints"):
        average_weights(fine_tunes, tmp_path / "x.pt", mix=[1.0])
    assert not (tmp_path / "x.pt").exists()


def test_cli_weight_average_and_its_usage_errors(fine_tunes, tmp_path, capsys):
    out = tmp_path / "w.pt"
    assert main(["ensemble", "--weight-average", "--mix", "0.6,0.4", *map(str, fine_tunes), "--out", str(out)]) == 0
    assert "weight average of" in capsys.readouterr().err and out.exists()
    assert main(["ensemble", "--mix", "0.6,0.4", *map(str, fine_tunes), "--out", str(tmp_path / "e.pt")]) == 2
    assert "--mix needs --weight-average" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ensemble", "--weight-average", "--mix", "a,b", *map(str, fine_tunes), "--out", str(out)])
    assert "comma-separated" in capsys.readouterr().err


def test_a_member_loads_as_the_network_it_was(members, faces, tmp_path):
    ens = combine_checkpoints(members, tmp_path / "ens.pt")
    for i, source in enumerate(members):
        ckpt = load_checkpoint(f"{ens}#{i}")
        assert ckpt["config"] == load_checkpoint(source)["config"]
        assert ckpt["meta"]["member_of"] == str(ens) and ckpt["meta"]["member"] == i
        assert ckpt["meta"]["command"] == f"ferkit train --seed {i}"  # the record the ensemble kept
        np.testing.assert_allclose(probs(f"{ens}#{i}", faces), probs(source, faces), atol=1e-6)


def test_member_marks_that_name_no_member(members, tmp_path):
    ens = combine_checkpoints(members, tmp_path / "ens.pt")
    with pytest.raises(ModelError, match=r"ensemble of 2 networks; its members are .*#0 to .*#1"):
        load_checkpoint(f"{ens}#2")
    with pytest.raises(ModelError, match=r"single 'fernet_s' network, not an ensemble"):
        load_checkpoint(f"{members[0]}#0")
    odd = tmp_path / "run#3.pt"  # a file whose name holds the mark is that file
    odd.write_bytes(members[0].read_bytes())
    assert load_checkpoint(odd)["config"]["arch"] == "fernet_s"


def test_member_digests_differ_from_the_ensembles(members, tmp_path):
    from ferkit.models.checkpoint import checkpoint_digest
    from ferkit.paths import sha256_file

    ens = combine_checkpoints(members, tmp_path / "ens.pt")
    digests = {checkpoint_digest(ens), checkpoint_digest(f"{ens}#0"), checkpoint_digest(f"{ens}#1")}
    assert len(digests) == 3 and checkpoint_digest(ens) == sha256_file(ens)


def test_a_member_exports_and_runs_on_onnx_runtime(members, faces, tmp_path, monkeypatch):
    from ferkit.inference.onnx_backend import load_onnx_classifier

    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path / "cache"))
    ens = combine_checkpoints(members, tmp_path / "ens.pt", tta="none")
    whole = load_onnx_classifier(str(ens)).predict_proba(faces)
    one = load_onnx_classifier(f"{ens}#1").predict_proba(faces)  # cached apart from the whole ensemble's export
    np.testing.assert_allclose(one, probs(members[1], faces, tta=None), atol=1e-4)
    assert not np.allclose(one, whole, atol=1e-3)


def test_a_members_export_is_named_after_the_member(members, tmp_path, monkeypatch):
    from ferkit.inference.export import export_onnx

    ens = combine_checkpoints(members, tmp_path / "ens.pt", tta="none")
    monkeypatch.chdir(tmp_path)
    assert export_onnx(f"{ens}#1").name == "ens-member1.onnx"  # not ens.onnx, the whole ensemble's name
    assert export_onnx(ens).name == "ens.onnx"
