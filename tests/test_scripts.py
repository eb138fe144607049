"""The scripts in tools/ and benchmarks/ at least start: a moved import otherwise surfaces only on the day a
model is shipped or a table rerun (tools/ship_model.py once imported TTA_MODES from where it no longer was)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(p for folder in ("tools", "benchmarks") for p in (ROOT / folder).glob("*.py")
                 if p.name not in ("timing.py", "__init__.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_script_imports_and_answers_help(script):
    done = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120,
                          cwd=script.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower()


def load_ship_model():
    """tools/ship_model.py as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ship_model", ROOT / "tools" / "ship_model.py")
    ship_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ship_model)
    return ship_model


def test_ship_model_builds_the_network_the_checkpoint_holds(tmp_path):
    import torch

    from ferkit.models.checkpoint import load_checkpoint, load_model
    from synthetic import seeded_checkpoint

    ship_model = load_ship_model()
    path = seeded_checkpoint(tmp_path / "net.pt", arch="fernet_s", input_size=24, tta="flip")
    model, config = ship_model.network_of(load_checkpoint(path), path)
    reference, _ = load_model(path)
    assert not model.training and config.tta == "flip" and config.input_size == 24
    x = torch.randn(3, 1, 24, 24)
    assert torch.allclose(model(x), reference(x), atol=1e-5)
    config.tta = "none"  # the caller's copy: the checkpoint's own config is untouched
    assert load_checkpoint(path)["config"]["tta"] == "flip"


def test_an_ensembles_members_keep_their_training_records_shipped_or_not(tmp_path, monkeypatch):
    """A member given as a shipped name has no run folder: its record comes from the shipped file's own meta."""
    import json

    import torch

    from synthetic import seeded_checkpoint

    ship_model = load_ship_model()
    weights = tmp_path / "weights"
    weights.mkdir()
    shipped = seeded_checkpoint(weights / "default.pt", arch="fernet_s", input_size=24)
    ckpt = torch.load(shipped, weights_only=True)
    ckpt["meta"] = {"command": "ferkit train --recipe default", "hardware": {"cpus": 2}, "train_seconds": 60.0}
    torch.save(ckpt, shipped)
    monkeypatch.setattr(ship_model, "WEIGHTS_DIR", weights)
    run = tmp_path / "runs" / "b"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"command": "ferkit train --seed 1", "cpus": 2}))
    ensemble = tmp_path / "runs" / "ens.pt"
    got = [ship_model.member_info(ensemble, m) for m in (
        {"source": "default", "metrics": {"accuracy": 0.7}},
        {"source": "b/best.pt", "epoch": 9, "metrics": {"accuracy": 0.6}})]
    assert got[0] == {"source": "default", "command": "ferkit train --recipe default", "hardware": {"cpus": 2},
                      "train_seconds": 60.0, "metrics": {"accuracy": 0.7}}
    assert got[1]["command"] == "ferkit train --seed 1" and got[1]["best_epoch"] == 9
    assert got[1]["metrics"] == {"accuracy": 0.6}


def test_a_member_of_another_ensemble_keeps_the_record_that_ensemble_kept(tmp_path, monkeypatch):
    """Re-shipping with ``default#1`` (a member of the shipped ensemble) or ``runs/ens.pt#0``: no run folder
    and no shipped file of its own; its record is the one its ensemble kept."""
    import torch

    from ferkit.models.ensemble import combine_checkpoints
    from synthetic import seeded_checkpoint

    ship_model = load_ship_model()
    weights, runs = tmp_path / "weights", tmp_path / "runs"
    weights.mkdir()
    runs.mkdir()
    for seed, command in ((0, "ferkit train --seed 0"), (1, "ferkit train --seed 1")):
        path = seeded_checkpoint(runs / f"m{seed}.pt", arch="fernet_s", input_size=24, seed=seed)
        ckpt = torch.load(path, weights_only=True)
        ckpt["meta"] = {"command": command, "epoch": 7 + seed}
        torch.save(ckpt, path)
    combine_checkpoints([runs / "m0.pt", runs / "m1.pt"], runs / "ens.pt")
    shipped = torch.load(runs / "ens.pt", weights_only=True)
    shipped["meta"]["members"][1] = {"source": "m1.pt", "command": "ferkit train --seed 1",
                                     "hardware": {"cpus": 2}, "train_seconds": 60.0, "best_epoch": 8}
    torch.save(shipped, weights / "default.pt")
    monkeypatch.setattr(ship_model, "WEIGHTS_DIR", weights)
    ensemble = tmp_path / "new.pt"
    got = ship_model.member_info(ensemble, {"source": "default#1", "metrics": {"accuracy": 0.7}})
    assert got == {"source": "default#1", "command": "ferkit train --seed 1", "hardware": {"cpus": 2},
                   "train_seconds": 60.0, "best_epoch": 8, "metrics": {"accuracy": 0.7}}
    got = ship_model.member_info(ensemble, {"source": "runs/ens.pt#0"})
    assert got["command"] == "ferkit train --seed 0" and got["best_epoch"] == 7


def test_rerun_tables_passes_only_flags_its_commands_take():
    # A renamed flag in a benchmark would otherwise surface on the day the tables are rerun.
    import importlib.util

    spec = importlib.util.spec_from_file_location("rerun_tables", ROOT / "benchmarks" / "rerun_tables.py")
    rerun = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = rerun  # its dataclass looks its module up there
    spec.loader.exec_module(rerun)
    plan = rerun.steps(Path("/shared"), "/fer/bin/python")
    assert {"card", "predict", "classify", "video-fps", "serve"} <= {s.name for s in plan}
    helps: dict[str, str] = {}
    for step in plan:
        flags = [a for a in step.argv if a.startswith("--")]
        if step.argv[1:3] == ("-m", "ferkit"):
            command = step.argv[3]
            if command not in helps:
                helps[command] = subprocess.run([sys.executable, "-m", "ferkit", command, "--help"],
                                                capture_output=True, text=True, timeout=120).stdout
            text, quoted = helps[command], False
        else:
            script = Path(step.argv[1])
            assert script.parent == ROOT / "benchmarks" and script.is_file(), step
            text, quoted = script.read_text(), True
        missing = [f for f in flags if (f'"{f}"' if quoted else f) not in text]
        assert not missing, f"{step.name}: {missing}"
        assert step.needs_fer == ("--fer-python" in flags)
