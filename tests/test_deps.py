"""The base install (no PyTorch) runs inference, and whatever needs a missing optional package says what to
install in one line. "Not installed" is simulated, not done: ``sys.modules[name] = None`` makes ``import name``
fail and ``importlib.util.find_spec(name)`` return None, as for a package that is absent."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import ferkit
from ferkit import deps
from ferkit.assets import sample_image_path
from ferkit.errors import FerkitError, ModelError
from ferkit.inference.classifier import load_classifier


def run_without(modules: tuple[str, ...], code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter where ``modules`` cannot be imported."""
    prelude = "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True, timeout=120)


def cli_without(modules: tuple[str, ...], *argv: str) -> subprocess.CompletedProcess:
    return run_without(modules, f"from ferkit.cli import main\nsys.exit(main({list(argv)!r}))")


# -- the helper ------------------------------------------------------------------------------------------------


def test_require_passes_when_installed_and_names_the_pip_line_when_not(monkeypatch):
    deps.require("numpy", "cv2", for_what="anything")
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(deps.MissingDependency) as err:
        deps.require("numpy", "torch", for_what="training")
    assert isinstance(err.value, FerkitError)
    assert str(err.value) == "training needs PyTorch, which is not installed: pip install 'ferkit[train]'"


def test_several_missing_packages_are_named_together(monkeypatch):
    for name in ("torch", "sklearn", "matplotlib"):
        monkeypatch.setitem(sys.modules, name, None)
    assert deps.missing("torch", "numpy", "sklearn", "matplotlib") == ["torch", "sklearn", "matplotlib"]
    with pytest.raises(deps.MissingDependency, match=r"^evaluation needs PyTorch, scikit-learn and matplotlib, "
                                                     r"which are not installed: pip install 'ferkit\[train\]'$"):
        deps.require("torch", "sklearn", "matplotlib", for_what="evaluation")



def test_ferkit_serve_without_its_extra_is_one_line_with_the_serve_pip_line(monkeypatch, capsys):
    from ferkit.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["serve"]) == 2
    assert capsys.readouterr().err.strip() == ("ferkit serve: error: the web server needs uvicorn, which is not "
                                               "installed: pip install 'ferkit[serve]'")

@pytest.mark.parametrize("modules, command", [
    (["matplotlib"], "pip install 'ferkit[plot]'"),  # the smallest extra that has it
    (["torch"], "pip install 'ferkit[train]'"),
    (["onnx", "matplotlib"], "pip install 'ferkit[train]'"),
    (["onnxruntime", "torch"], "pip install 'ferkit[train]'"),  # the extra brings the base back too
    (["onnxruntime"], "pip install onnxruntime"),  # a base dependency removed by hand
    (["cv2", "PIL"], "pip install opencv-python-headless pillow"),
])
def test_install_command(modules, command):
    assert deps.install_command(modules) == command


def test_available_does_not_import():
    assert deps.available("json") and not deps.available("ferkit_no_such_module")
    code = "from ferkit import deps\nprint(deps.available('torch'), 'torch' in sys.modules)"
    assert run_without((), code).stdout.split() == ["True", "False"]


# -- inference without PyTorch ---------------------------------------------------------------------------------


@pytest.mark.parametrize("detector", ["haar", "none"])
def test_predict_runs_without_torch(detector):
    result = cli_without(("torch",), "predict", str(sample_image_path()), "--json", "--detector", detector)
    assert result.returncode == 0, result.stderr
    ((record),) = json.loads(result.stdout)
    (face,) = record["faces"]
    assert face["emotion"] in face["probs"] and sum(face["probs"].values()) == pytest.approx(1, abs=1e-4)
    assert "onnxruntime" in result.stderr  # the shipped model ran on its ONNX twin


def test_predict_without_torch_falls_back_to_haar_with_one_warning_line():
    # FERKIT_OFFLINE=1 comes from conftest: `auto` may not fetch YuNet, so it uses Haar and says how to get YuNet.
    result = cli_without(("torch",), "predict", str(sample_image_path()), "--json")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "ferkit download" in warnings[0] and "FERKIT_OFFLINE" in warnings[0]
    assert "detector haar" in result.stderr and json.loads(result.stdout)[0]["faces"]


VERBS_NEEDING_TORCH = [
    ("train", "--data", "x", "--out", "y"),
    ("evaluate", "--data", "x"),
    ("ensemble", "a.pt", "b.pt", "--out", "c.pt"),
    ("export", "default"),
    ("study", "--data", "x", "--out", "y"),
    ("explain", str(sample_image_path()), "--out", "y"),
    ("models",),
]


def test_each_verb_that_needs_torch_says_so_in_one_line_with_exit_status_2():
    # One interpreter for all of them: each call of main() meets the same missing torch.
    code = ("import contextlib, io, json\nfrom ferkit.cli import main\nout = []\n"
            f"for argv in {[list(v) for v in VERBS_NEEDING_TORCH]!r}:\n"
            "    err = io.StringIO()\n"
            "    with contextlib.redirect_stderr(err):\n"
            "        code = main(argv)\n"
            "    out.append([argv[0], code, err.getvalue()])\n"
            "print(json.dumps(out))")
    result = run_without(("torch",), code)
    assert result.returncode == 0, result.stderr
    for verb, code, err in json.loads(result.stdout):
        assert code == 2, (verb, err)
        (line,) = err.splitlines()
        assert line.startswith(f"ferkit {verb}: error: ") and "needs PyTorch" in line, line
        assert line.endswith("which is not installed: pip install 'ferkit[train]'"), line


def test_data_inspect_needs_no_torch_and_plot_says_what_to_install(tmp_path):
    from synthetic import standard_items, write_folder

    root = write_folder(tmp_path / "fer", standard_items())
    result = cli_without(("torch",), "data", "inspect", str(root), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["quality"]
    result = cli_without(("torch", "matplotlib"), "data", "inspect", str(root), "--plot", str(tmp_path / "c.png"))
    assert result.returncode == 2
    assert result.stderr.strip() == ("ferkit data: error: --plot needs matplotlib, which is not installed: "
                                     "pip install 'ferkit[plot]'")


def test_an_unknown_missing_module_is_a_bug_and_keeps_its_traceback():
    code = ("from ferkit.cli import main\nimport ferkit.cli.models as m\n"
            "def broken(args):\n    import ferkit_no_such_module\n"
            "m.run = broken\nsys.exit(main(['models']))")
    result = run_without((), code)
    assert result.returncode == 1 and "Traceback" in result.stderr and "ferkit_no_such_module" in result.stderr


# -- the Recognizer and its backends ---------------------------------------------------------------------------


def test_onnx_backend_without_onnxruntime_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(deps.MissingDependency, match=r"^the ONNX Runtime backend needs ONNX Runtime, which is "
                                                     r"not installed: pip install onnxruntime$"):
        ferkit.Recognizer(backend="onnx", detector="none")


def test_auto_backend_with_a_checkpoint_and_no_torch_says_what_to_install(monkeypatch, tmp_path):
    from synthetic import seeded_checkpoint

    path = seeded_checkpoint(tmp_path / "mine.pt", input_size=24)
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(deps.MissingDependency) as err:
        load_classifier(path)
    assert str(err.value).startswith(f"the checkpoint {path} needs PyTorch, which is not installed: "
                                     "pip install 'ferkit[train]'; or export it to ONNX")
    with pytest.raises(ModelError, match="checkpoint 'mnie.pt' not found"):  # a typo is said first
        load_classifier("mnie.pt")


def test_a_shipped_model_needs_onnxruntime_or_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(deps.MissingDependency, match=r"^'default' runs on ONNX Runtime or PyTorch, and neither is "
                                                     r"installed: pip install onnxruntime$"):
        load_classifier("default")


def test_torch_backend_or_a_gpu_without_torch_points_at_onnx(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(deps.MissingDependency, match=r"^backend 'torch' needs PyTorch.*; or use backend 'onnx'"):
        load_classifier("default", backend="torch")
    with pytest.raises(deps.MissingDependency, match=r"^device 'cuda' needs PyTorch.*; or use backend 'onnx'"):
        load_classifier("default", device="cuda")
    assert load_classifier("default").backend == "onnx"  # the shipped model itself runs without torch
