"""Sharpness-aware minimisation (--sam): the climb, the batch-norm statistics, and training with it."""
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from ferkit.models.checkpoint import load_checkpoint
from ferkit.errors import FerkitError
from ferkit.training.sam import SharpnessAware, frozen_batchnorm_statistics
from ferkit.training.loop import train
from synthetic import learnable_dataset, tiny_config as tiny


@pytest.fixture(scope="module")
def data():
    return learnable_dataset(n_train=224, n_val=70, size=24)


def test_the_climb_moves_rho_along_the_gradient_and_comes_back_exactly():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    net[0].bias.requires_grad_(False)  # frozen weights stay where they are
    before = [p.detach().clone() for p in net.parameters()]
    net(torch.randn(8, 5)).square().sum().backward()
    grads = [p.grad.clone() for p in net.parameters() if p.requires_grad]
    sam = SharpnessAware(net, rho=0.05)
    sam.climb()
    moved = [p.detach() - b for p, b in zip(net.parameters(), before)]
    assert torch.equal(moved[1], torch.zeros_like(moved[1]))  # the frozen bias
    trainable = [moved[0], *moved[2:]]
    flat_step = torch.cat([m.flatten() for m in trainable])
    flat_grad = torch.cat([g.flatten() for g in grads])
    assert flat_step.norm().item() == pytest.approx(0.05, rel=1e-5)
    assert torch.allclose(flat_step, 0.05 * flat_grad / flat_grad.norm(), atol=1e-7)
    sam.return_back()
    assert all(torch.allclose(p, b, atol=1e-7) for p, b in zip(net.parameters(), before))
    with pytest.raises(RuntimeError, match="without climb"):
        sam.return_back()


def test_the_second_pass_leaves_batchnorm_statistics_and_momentum_as_they_were():
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.BatchNorm1d(4, momentum=None)).train()
    net(torch.randn(16, 3))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    with frozen_batchnorm_statistics(net):
        out = net(torch.randn(16, 3) * 5 + 2)
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    assert net[1].momentum == 0.1 and net[2].momentum is None
    assert out.mean(0).abs().max() < 1e-4  # the batch is still normalised with its own statistics
    net(torch.randn(16, 3) * 5 + 2)  # outside the block the statistics move again
    assert not torch.equal(state["1.running_mean"], net[1].running_mean)


def test_training_with_sam_learns_counts_each_batch_once_and_differs_from_plain_sgd(tmp_path, data):
    kw = dict(model="fernet_s", epochs=3, optimizer="sgd", lr=0.05)
    sharp = train(tiny(tmp_path / "sam", sam=0.05, **kw), data)
    plain = train(tiny(tmp_path / "plain", **kw), data)
    assert sharp["best_val_accuracy"] > 0.6  # chance is 1/7
    a = load_checkpoint(Path(sharp["run_dir"]) / "last.pt")["state_dict"]
    b = load_checkpoint(Path(plain["run_dir"]) / "last.pt")["state_dict"]
    counts = [v.item() for k, v in a.items() if k.endswith("num_batches_tracked")]
    assert counts and set(counts) == {3 * (224 // 16)}  # one batch-norm update per step, not two
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


@pytest.mark.parametrize("rho", [-0.1, 2.0])
def test_a_radius_outside_0_1_is_a_clear_error(tmp_path, data, rho):
    with pytest.raises(FerkitError, match="--sam"):
        train(tiny(tmp_path, sam=rho), data)
