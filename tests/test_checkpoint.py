"""Checkpoints: the round trip, and one clear line (never torch's "weights_only=False" advice) for every file
that is not a ferkit checkpoint."""
from __future__ import annotations

import os
import pickle
import random
import zipfile

import pytest
import torch

from ferkit.errors import ModelError
from ferkit.models import checkpoint as ckpt_mod
from ferkit.models import create_model
from ferkit.models.checkpoint import (
    ModelConfig, load_checkpoint, load_model, load_state_dict_checked, resolve_checkpoint, save_checkpoint,
)


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_model("baseline_cnn", input_size=24)


CONFIG = ModelConfig(arch="baseline_cnn", input_size=24, labels=["a", "b", "c", "d", "e", "f", "g"], tta="flip",
                     temperature=1.7, crop_margin=0.1, face_crop=0.8333, mean=[0.4], std=[0.3])


class Opaque:
    """Any Python class: pickling one into a checkpoint would make loading it run code."""


# -- the round trip --------------------------------------------------------------------------------------------


def test_round_trip_keeps_weights_config_and_meta(tmp_path):
    model = tiny_model()
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, CONFIG, meta={"epoch": 3, "command": "ferkit train ..."})
    loaded, config = load_model(path)
    assert config == CONFIG
    assert not loaded.training
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    raw = load_checkpoint(path)
    assert raw["format"] == "ferkit" and raw["version"] == 1 and raw["meta"]["epoch"] == 3


def test_float16_weights_load_into_a_float32_model(tmp_path):
    model = tiny_model()
    half = tmp_path / "half.pt"
    save_checkpoint(half, tiny_model().half(), CONFIG)
    assert all(v.dtype == torch.float16 for v in load_checkpoint(half)["state_dict"].values()
               if v.is_floating_point())
    loaded, _ = load_model(half)
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert b.dtype == a.dtype, k
        if a.is_floating_point():
            assert torch.allclose(a, b, rtol=1e-3, atol=1e-4), k  # float16 rounding only
    assert os.path.getsize(half) < 0.6 * os.path.getsize(_full(tmp_path, model))


def _full(tmp_path, model):
    path = tmp_path / "full.pt"
    save_checkpoint(path, model, CONFIG)
    return path


def test_a_crash_mid_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    save_checkpoint(path, tiny_model(0), CONFIG, meta={"epoch": 1})
    before = path.read_bytes()

    def crashing_save(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, tiny_model(1), CONFIG, meta={"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # no temporary file left behind
    monkeypatch.undo()
    assert load_checkpoint(path)["meta"]["epoch"] == 1


# -- finding the file ------------------------------------------------------------------------------------------


def test_resolve_checkpoint_takes_shipped_names_and_paths(tmp_path):
    assert resolve_checkpoint("default").name == "default.pt"
    path = _full(tmp_path, tiny_model())
    assert resolve_checkpoint(path) == path and resolve_checkpoint(str(path)) == path


def test_a_missing_checkpoint_names_the_shipped_models():
    with pytest.raises(ModelError) as err:
        resolve_checkpoint("runs/nowhere/best.pt")
    assert str(err.value) == ("checkpoint 'runs/nowhere/best.pt' not found; give a .pt file written by "
                              "`ferkit train` or one of the shipped models: default, fast, robust")


def test_a_run_folder_points_at_its_best_pt(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "best.pt").write_bytes(b"")
    with pytest.raises(ModelError, match=r"is a folder \(it holds best.pt\); give the .pt file, e.g. .*best.pt"):
        resolve_checkpoint(run)


def test_a_shipped_model_missing_from_the_installation(tmp_path, monkeypatch):
    monkeypatch.setattr(ckpt_mod, "WEIGHTS_DIR", tmp_path)
    with pytest.raises(ModelError, match="the shipped model 'fast' is not in this installation"):
        resolve_checkpoint("fast")


def test_resolving_needs_no_torch(tmp_path):
    """`resolve_checkpoint` runs in the base install, so the ONNX path can name a typo before asking for torch."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "from ferkit.models.checkpoint import resolve_checkpoint\n"
            "print(resolve_checkpoint('default').name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "default.pt"


# -- files that are not ferkit checkpoints ---------------------------------------------------------------------


def _bad_files(tmp_path) -> dict[str, tuple[bytes | None, str]]:
    """name -> (how to write it, what the message must say)."""
    good = _full(tmp_path, tiny_model()).read_bytes()
    torch.save(Opaque(), tmp_path / "object.pt")
    torch.save(tiny_model(), tmp_path / "whole_model.pt")
    torch.save({"conv.weight": torch.zeros(2)}, tmp_path / "state_dict.pt")
    torch.save({"format": "other", "weights": [1]}, tmp_path / "foreign.pt")
    torch.save({"format": "ferkit", "version": 1, "config": {}}, tmp_path / "incomplete.pt")
    torch.save({"format": "ferkit", "version": 9, "config": {}, "state_dict": {}}, tmp_path / "future.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    return {
        "empty.pt": (b"", "the file is empty"),
        **{f"random{seed}.pt": (random.Random(seed).randbytes(4096), "not a PyTorch file") for seed in range(8)},
        "dataset.pt": (_zip_bytes(tmp_path), "a zip archive that torch cannot read"),
        "pickle.pt": (pickle.dumps({"state_dict": {}}), "not a PyTorch file"),
        "truncated.pt": (good[: len(good) // 2], "truncated or corrupt"),
        "text.pt": (b"hello, I am not a model\n", "not a PyTorch file"),
        "object.pt": (None, "pickled Python object (test_checkpoint.Opaque), which ferkit does not load"),
        "whole_model.pt": (None, "pickled Python object (ferkit.models.baseline."),
        "state_dict.pt": (None, "bare weights (a state dict) without ferkit's config"),
        "foreign.pt": (None, "no 'format': 'ferkit' entry (keys: 'format', 'weights')"),
        "incomplete.pt": (None, "it has no 'state_dict' entry (an incomplete file?)"),
        "future.pt": (None, "format version 9 and this ferkit reads up to 1; upgrade ferkit"),
        "list.pt": (None, "it holds a list"),
    }


def _zip_bytes(tmp_path) -> bytes:
    """A zip that is not a checkpoint (a dataset renamed, say)."""
    path = tmp_path / "data.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("train/happy/1.jpg", b"jpeg")
    return path.read_bytes()


@pytest.mark.filterwarnings("error")  # torch's multi-line warnings about foreign pickles are kept quiet too
def test_every_bad_file_gets_one_line_naming_it_and_the_problem(tmp_path):
    for name, (data, expected) in _bad_files(tmp_path).items():
        path = tmp_path / name
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(ModelError) as err:
            load_model(path)
        message = str(err.value)
        assert message.startswith(f"{path} is not a ferkit checkpoint: "), message
        assert expected in message, (name, message)
        assert "\n" not in message, name
        assert "weights_only" not in message and "weights_only" not in repr(err.value.__cause__), name
        # Nor in a Python traceback: torch's own exception (with its advice) is not chained.
        assert err.value.__cause__ is None, name
        assert err.value.__context__ is None or err.value.__suppress_context__, name


def test_a_checkpoint_whose_weights_do_not_fit_is_refused_before_loading(tmp_path):
    """A config that builds a different network (here: 3 classes) from the stored weights (7 classes)."""
    path = tmp_path / "m.pt"
    save_checkpoint(path, tiny_model(), ModelConfig(arch="baseline_cnn", input_size=24, num_classes=3))
    with pytest.raises(ModelError, match=rf"weights in {path} do not fit BaselineCNN: shape mismatches "):
        load_model(path)


# -- load_state_dict_checked -----------------------------------------------------------------------------------


def test_load_state_dict_checked_names_missing_unexpected_and_misshaped_keys():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 2))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    del state["1.bias"]
    state["2.weight"] = torch.zeros(1)
    state["0.weight"] = torch.zeros(5, 4)
    with pytest.raises(ModelError) as err:
        load_state_dict_checked(model, state, source="pretrained.pth")
    assert str(err.value) == ("weights in pretrained.pth do not fit Sequential: missing keys 1.bias; unexpected "
                              "keys 2.weight; shape mismatches 0.weight: (5, 4) vs (3, 4)")


def test_load_state_dict_checked_shortens_long_key_lists():
    model = torch.nn.Sequential(*[torch.nn.Linear(2, 2) for _ in range(4)])
    with pytest.raises(ModelError, match=r"missing keys 0.weight, 0.bias, 1.weight, 1.bias, 2.weight and 3 more$"):
        load_state_dict_checked(model, {}, source="x")


def test_load_state_dict_checked_loads_weights_that_fit():
    source, target = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    load_state_dict_checked(target, source.state_dict(), source="x")
    assert torch.equal(source.weight, target.weight)
