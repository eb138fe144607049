"""Which process a run is and where it trains: one process outside torchrun, its own GPU under it.
(tests/test_train.py trains with two real gloo processes.)"""
import pytest
import torch

import ferkit.training.distributed as distributed
from ferkit.devices import resolve_device
from ferkit.errors import FerkitError
from ferkit.training.distributed import Distributed, setup_distributed


def test_outside_torchrun_a_run_is_the_main_process_of_one_on_the_resolved_device(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    ddp, device = setup_distributed("cpu")
    assert ddp == Distributed() and ddp.main and device == torch.device("cpu")
    assert setup_distributed("auto")[1] == torch.device(resolve_device("auto"))
    with pytest.raises(FerkitError, match="unknown device 'gpu'"):
        setup_distributed("gpu")


def test_each_rank_takes_every_world_th_item_of_the_shared_order():
    order = torch.arange(7)
    shares = [Distributed(rank=r, world=3).shard(order).tolist() for r in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert not Distributed(rank=1, world=3).main


def test_under_torchrun_cuda_means_this_process_s_own_gpu(monkeypatch):
    # No GPUs here: stand in for torch's process group and CUDA, and check what the run asks of them.
    calls = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(distributed, "resolve_device", lambda name: "cuda")
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: calls.setdefault("set_device", d))
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend: calls.setdefault("backend", backend))
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    ddp, device = setup_distributed("auto")
    assert ddp == Distributed(rank=1, world=2, local_rank=1)
    assert device == torch.device("cuda:1") and calls == {"set_device": "cuda:1", "backend": "nccl"}
