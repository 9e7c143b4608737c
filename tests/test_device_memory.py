"""available_activation_bytes with monkeypatched readings (no real GPU needed)."""

from __future__ import annotations

import sys
import types

import pytest
import torch
from torch import nn

import tiny_backprop
from tiny_backprop import BudgetError
from tiny_backprop import device_memory as dm

MiB = 2**20
GiB = 2**30


def _model() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 8))  # 4680 fp32 params
    m[2].bias.requires_grad_(False)
    return m


def _param_bytes(m: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() * p.element_size() for p in m.parameters()
               if p.requires_grad or not trainable_only)


@pytest.fixture
def cpu_free(monkeypatch, tmp_path):
    """CPU with 8 GiB available and no cgroup limit."""
    fake = types.SimpleNamespace(virtual_memory=lambda: types.SimpleNamespace(available=8 * GiB))
    monkeypatch.setitem(sys.modules, "psutil", fake)
    monkeypatch.setattr(dm, "_CGROUP_ROOT", tmp_path)  # empty: no limit
    return tmp_path


@pytest.fixture
def cuda(monkeypatch):
    """A fake CUDA device: 40 GiB total, 10 GiB free, 3 GiB reserved of which 1 GiB used."""
    readings = dict(free=10 * GiB, total=40 * GiB, reserved=3 * GiB, allocated=1 * GiB,
                    fraction=1.0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "mem_get_info",
                        lambda d=None: (readings["free"], readings["total"]))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda d=None: readings["reserved"])
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda d=None: readings["allocated"])
    monkeypatch.setattr(torch.cuda, "get_per_process_memory_fraction",
                        lambda d=None: readings["fraction"])
    return readings


def test_exported_lazily_from_the_package():
    assert tiny_backprop.available_activation_bytes is dm.available_activation_bytes
    assert "available_activation_bytes" in dir(tiny_backprop)


def test_cpu_without_model_is_free_minus_margin(cpu_free):
    got = dm.available_activation_bytes("cpu")
    assert got == 8 * GiB - int(0.1 * 8 * GiB) - 64 * MiB
    report = dm.explain_available_bytes("cpu")
    assert report.free_source == "psutil.virtual_memory().available"
    assert any("no model" in n for n in report.notes)
    assert "activation memory on cpu" in str(report)


def test_cpu_params_already_allocated_only_grads_and_adamw_state_count(cpu_free):
    m = _model()
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    trainable = _param_bytes(m, trainable_only=True)
    r = dm.explain_available_bytes("cpu", model=m, optimizer=opt, margin=0.0,
                                   margin_fixed_bytes=0)
    assert r.param_bytes == 0  # already on the CPU: not free any more, not subtracted
    assert r.grad_bytes == trainable  # the frozen bias gets no gradient
    assert r.optimizer_bytes == 2 * trainable  # exp_avg + exp_avg_sq, not for frozen ones
    assert r.result_bytes == 8 * GiB - 3 * trainable

    # after one step gradients and state exist: nothing more to allocate
    m(torch.randn(2, 64)).sum().backward()
    opt.step()
    r2 = dm.explain_available_bytes("cpu", model=m, optimizer=opt, margin=0.0,
                                    margin_fixed_bytes=0)
    assert r2.grad_bytes == 0 and r2.optimizer_bytes == 0
    assert r2.optimizer_existing_bytes == 2 * trainable
    assert r2.result_bytes == 8 * GiB


def test_optimizer_state_factors(cpu_free):
    m = _model()
    trainable = _param_bytes(m, trainable_only=True)

    def opt_bytes(opt):
        return dm.explain_available_bytes("cpu", optimizer=opt).optimizer_bytes

    assert opt_bytes(torch.optim.SGD(m.parameters(), lr=0.1)) == 0
    assert opt_bytes(torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)) == trainable
    assert opt_bytes(torch.optim.Adam(m.parameters(), amsgrad=True)) == 3 * trainable

    class Mine(torch.optim.Optimizer):
        def __init__(self, params):
            super().__init__(params, {})

    r = dm.explain_available_bytes("cpu", optimizer=Mine(m.parameters()))
    assert r.optimizer_bytes == 2 * trainable
    assert any("Mine is not known" in n for n in r.notes)


def test_tied_parameters_count_once(cpu_free):
    emb = nn.Embedding(100, 16)
    head = nn.Linear(16, 100, bias=False)
    head.weight = emb.weight
    m = nn.Sequential(emb, head)
    r = dm.explain_available_bytes("cpu", model=m)
    assert r.grad_bytes == 100 * 16 * 4


def test_cgroup_v2_limit_is_respected(cpu_free):
    root = cpu_free
    (root / "memory.max").write_text(f"{2 * GiB}\n")
    (root / "memory.current").write_text(f"{GiB + 100 * MiB}\n")
    (root / "memory.stat").write_text(f"anon 5\ninactive_file {100 * MiB}\nactive_file 7\n")
    r = dm.explain_available_bytes("cpu", margin=0.0, margin_fixed_bytes=0)
    assert r.free_bytes == GiB  # 2 GiB limit - (1.1 GiB used - 0.1 GiB reclaimable cache)
    assert "cgroup v2" in r.free_source
    (root / "memory.max").write_text("max\n")  # no limit: psutil's figure again
    assert dm.explain_available_bytes("cpu").free_bytes == 8 * GiB


def test_cgroup_v1_limit_is_respected(cpu_free):
    v1 = cpu_free / "memory"
    v1.mkdir()
    (v1 / "memory.limit_in_bytes").write_text(str(3 * GiB))
    (v1 / "memory.usage_in_bytes").write_text(str(GiB))
    (v1 / "memory.stat").write_text("total_inactive_file 0\n")
    assert dm.explain_available_bytes("cpu").free_bytes == 2 * GiB
    (v1 / "memory.limit_in_bytes").write_text(str(2**63 - 4096))  # v1's "unlimited"
    assert dm.explain_available_bytes("cpu").free_bytes == 8 * GiB


def test_cuda_free_includes_allocator_cache(cuda):
    r = dm.explain_available_bytes("cuda", margin=0.0, margin_fixed_bytes=0)
    assert r.device == "cuda:0"
    assert r.free_bytes == 10 * GiB + 2 * GiB  # mem_get_info + (reserved - allocated)
    assert dm.available_activation_bytes(0) == 12 * GiB - int(0.1 * 12 * GiB) - 64 * MiB


def test_cuda_per_process_fraction_caps_free(cuda):
    cuda["fraction"] = 0.1  # 4 GiB of 40 GiB allowed, 1 GiB already allocated
    r = dm.explain_available_bytes("cuda:0", margin=0.0, margin_fixed_bytes=0)
    assert r.free_bytes == 3 * GiB
    assert "set_per_process_memory_fraction" in r.free_source


def test_cuda_counts_params_still_on_cpu_and_missing_grads(cuda):
    m = _model()  # on the CPU: it will be moved to the GPU
    opt = torch.optim.AdamW(m.parameters())
    total = _param_bytes(m)
    trainable = _param_bytes(m, trainable_only=True)
    r = dm.explain_available_bytes("cuda:0", model=m, optimizer=opt, reserve=5 * MiB,
                                   margin=0.0, margin_fixed_bytes=0)
    assert r.param_bytes == total
    assert r.grad_bytes == trainable
    assert r.optimizer_bytes == 2 * trainable
    assert r.reserve_bytes == 5 * MiB
    assert r.result_bytes == 12 * GiB - total - 3 * trainable - 5 * MiB


def test_cuda_unavailable_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        dm.available_activation_bytes("cuda:0")


def test_unknown_device_type_names_the_way_out():
    with pytest.raises(ValueError, match=r"free_bytes=.*explicit byte budget"):
        dm.available_activation_bytes("meta")
    got = dm.available_activation_bytes("meta", free_bytes=GiB, reserve=0, margin=0.0,
                                        margin_fixed_bytes=0)
    assert got == GiB


def test_nothing_left_is_a_budget_error_with_the_shortfall(cpu_free):
    m = _model()
    trainable = _param_bytes(m, trainable_only=True)
    with pytest.raises(BudgetError) as info:
        dm.available_activation_bytes("cpu", model=m, free_bytes=trainable + 100, margin=0.0,
                                      margin_fixed_bytes=0, reserve=1000)
    err = info.value
    assert err.budget_bytes == 100 - 1000
    assert "901 bytes) missing" in str(err)
    assert err.memory.reserve_bytes == 1000


@pytest.mark.parametrize("kwargs", [dict(margin=1.0), dict(margin=-0.1), dict(reserve=-1),
                                    dict(reserve=1.5), dict(margin_fixed_bytes=True)])
def test_bad_arguments(cpu_free, kwargs):
    with pytest.raises(ValueError):
        dm.available_activation_bytes("cpu", **kwargs)
