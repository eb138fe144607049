"""Shared fixtures. Integration tests use ../shared (the FER2013 zip, real photos, the YuNet model) and are
skipped, with the reason, where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Tests run beside other work on a 2-core machine: keep each test process to one thread.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ["FERKIT_OFFLINE"] = "1"  # no test downloads (detector="auto" would fetch YuNet)

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FERKIT_SHARED", REPO.parent / "shared"))


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} not present (integration data from ../shared)")
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return _need(SHARED)


@pytest.fixture(scope="session")
def fer2013_zip() -> Path:
    return _need(SHARED / "data" / "fer2013.zip")


@pytest.fixture(scope="session")
def media_dir() -> Path:
    return _need(SHARED / "media")


@pytest.fixture(scope="session")
def yunet_model() -> Path:
    return _need(SHARED / "models" / "face_detection_yunet_2023mar.onnx")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own ferkit cache dir unless it sets one: no test reads another's cache."""
    monkeypatch.setenv("FERKIT_CACHE_DIR", str(tmp_path_factory.mktemp("ferkit-cache")))
