"""`ferkit serve` as a user starts it: a real uvicorn process on a free loopback port, from an install without
PyTorch. It is up within seconds, answers predict with exactly what `ferkit predict --json` says for the same
photo, and says what to install for explanations."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from typing import Iterator

import pytest

pytest.importorskip("fastapi", reason="the serve extra (fastapi, uvicorn, python-multipart) is not installed")
pytest.importorskip("uvicorn", reason="the serve extra is not installed")

from ferkit.assets import sample_image_path  # noqa: E402

# Until `serve` is one of ferkit.cli's verbs, the command line is run with it added to them.
_WITH_SERVE = textwrap.dedent("""
    import sys
    from ferkit import cli
    cli._VERB_MODULES += ("serve",)
    sys.exit(cli.main(sys.argv[1:]))
""")

# A sitecustomize that makes PyTorch look uninstalled: the base install has none.
_NO_TORCH = textwrap.dedent("""
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoTorch())
""")


def serve_argv() -> list[str]:
    from ferkit import cli

    if "serve" in getattr(cli, "_VERB_MODULES", ()):
        return [sys.executable, "-m", "ferkit", "serve"]
    return [sys.executable, "-c", _WITH_SERVE, "serve"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@contextlib.contextmanager
def running_server(*args: str, env: dict | None = None, timeout: float = 30) -> Iterator[tuple[str, float]]:
    """(base URL, seconds from launch to the first successful /health) of a `ferkit serve` process; stopped with
    Ctrl-C (SIGINT) at the end, which must end it cleanly."""
    port = free_port()
    full_env = {**os.environ, **(env or {})}
    started = time.perf_counter()
    proc = subprocess.Popen([*serve_argv(), "--port", str(port), "--no-access-log", *args], env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ferkit serve exited with {proc.returncode}:\n{proc.stdout.read()}")
            try:
                if http("GET", f"{base}/api/v1/health")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.perf_counter() - started > timeout:
                raise AssertionError("ferkit serve did not answer /health in time")
            time.sleep(0.02)
        yield base, time.perf_counter() - started
    finally:
        proc.send_signal(2)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stdout.read()


@pytest.fixture(scope="module")
def torch_free_server(tmp_path_factory) -> Iterator[tuple[str, float]]:
    site = tmp_path_factory.mktemp("no-torch")
    (site / "sitecustomize.py").write_text(_NO_TORCH)
    path = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    with running_server("--detector", "haar", env={"PYTHONPATH": path}) as server:
        yield server


def test_it_starts_quickly_without_pytorch(torch_free_server):
    base, seconds = torch_free_server
    print(f"ferkit serve: first /health after {seconds:.2f} s")
    # The target is 2 s; the bound leaves room for a CI machine busy with other work.
    assert seconds < 8
    status, health = http("GET", f"{base}/api/v1/health")
    assert status == 200 and health["ready"] is True and health["explain"] is False


def test_predict_matches_ferkit_predict_for_the_same_photo(torch_free_server, capsys):
    from ferkit.cli import main

    base, _ = torch_free_server
    status, served = http("POST", f"{base}/api/v1/predict", sample_image_path().read_bytes(),
                          {"Content-Type": "application/octet-stream"})
    assert status == 200
    assert main(["predict", str(sample_image_path()), "--json", "--detector", "haar"]) == 0
    cli = json.loads(capsys.readouterr().out)
    assert served["faces"] == cli[0]["faces"] and len(served["faces"]) == 1


def test_explanations_say_what_to_install(torch_free_server):
    base, _ = torch_free_server
    status, body = http("POST", f"{base}/api/v1/explain?method=gradcam", sample_image_path().read_bytes())
    assert status == 501
    assert body["error"].startswith("POST /api/v1/explain needs PyTorch") and "pip install" in body["error"]


def test_the_model_card_is_read_without_pytorch(torch_free_server):
    base, _ = torch_free_server
    status, info = http("GET", f"{base}/api/v1/models")
    assert status == 200 and info["backend"] == "onnx"
    assert info["card"]["accuracy"] >= 0.71 and info["card"]["split"] == "publictest"


def test_a_token_from_the_environment_guards_the_api():
    with running_server("--detector", "haar", env={"FERKIT_TOKEN": "from-env"}) as (base, _):
        assert http("GET", f"{base}/api/v1/models")[0] == 401
        assert http("GET", f"{base}/api/v1/models", headers={"Authorization": "Bearer from-env"})[0] == 200


def test_a_bad_model_is_one_line_and_exit_status_2():
    proc = subprocess.run([*serve_argv(), "--model", "no-such-model", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "no-such-model" in proc.stderr


def test_the_defaults_bind_to_loopback_only():
    import argparse

    from ferkit.cli import serve

    parser = argparse.ArgumentParser()
    serve.register(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.token is None and args.cors == []
