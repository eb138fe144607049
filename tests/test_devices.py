"""Device names: "auto" resolves to a device that is present; names this machine cannot run are refused."""
import pytest
import torch

from ferkit.devices import resolve_device
from ferkit.errors import FerkitError


def test_auto_and_cpu_resolve_to_devices_torch_accepts():
    assert torch.device(resolve_device("auto")).type in ("cpu", "cuda", "mps")
    assert resolve_device("cpu") == "cpu"
    assert resolve_device(torch.device("cpu")) == "cpu"


@pytest.mark.parametrize("name", ["gpu", "cuda:x", ""])
def test_unknown_names_are_refused(name):
    with pytest.raises(FerkitError, match="unknown device"):
        resolve_device(name)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_cuda_device_is_refused():
    with pytest.raises(FerkitError, match="no CUDA device is visible"):
        resolve_device("cuda:0")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_index_past_the_last_device_is_refused():
    with pytest.raises(FerkitError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")
