"""Which autocast dtype a run picks, and that the shared autocast context really switches autocast on and off."""
import pytest
import torch

from ferkit.training import precision

CPU = torch.device("cpu")


@pytest.mark.parametrize("name, dtype", [("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_explicit_precision_is_obeyed(name, dtype):
    assert precision.autocast_dtype(name, CPU) is dtype


@pytest.mark.parametrize("native, dtype", [(True, torch.bfloat16), (False, None)])
def test_auto_uses_bf16_only_where_the_cpu_has_it(monkeypatch, native, dtype):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.autocast_dtype("auto", CPU) is dtype


def test_mixed_precision_context():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with precision.mixed_precision(CPU, None):
        assert (a @ b).dtype == torch.float32
    with precision.mixed_precision(CPU, torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
    assert (a @ b).dtype == torch.float32
