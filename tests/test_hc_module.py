"""HCModule: trains like the wrapped model (exact), module plumbing, caching, errors."""

from __future__ import annotations

import pytest
import torch

import tiny_backprop
from tests._runtime_dev import (
    assert_same_buffers,
    assert_same_grads,
    clone_model,
    dev_plan,
    have_planner,
    step,
)
from tiny_backprop import HCModule, zoo
from tiny_backprop import hc_module as hc_mod
from tiny_backprop.tree import Region

SMALL = dict(batch=2, seq=16, vocab=50, d_model=32, n_layers=3, n_heads=2, image=16, d=16)


@pytest.fixture(autouse=True)
def _planner(monkeypatch):
    if not have_planner():  # until tiny_backprop.plan lands
        monkeypatch.setattr(hc_mod, "_make_plan", dev_plan)


def _build(name: str):
    cfg = zoo.build(name, "small").config
    return zoo.build(name, "small", overrides={k: v for k, v in SMALL.items() if k in cfg})


def _budgets() -> list:
    return [1.0, 0.5, "min"]


def _min_budget(hc: HCModule, args) -> int:
    try:
        hc_mod._make_plan(hc_mod._capture_model(hc.module, args, {}).ir, 1, hc.planner, None)
    except tiny_backprop.BudgetError as e:
        return e.minimum_bytes
    return 1


@pytest.mark.parametrize("name", ["gpt2", "resnet", "unet", "mlp"])
@pytest.mark.parametrize("budget", _budgets())
def test_trains_exactly_like_the_model(name, budget) -> None:
    w = _build(name)
    model = w.model.train()
    ref = clone_model(model)
    hc = HCModule(model, 1.0)
    if budget == "min":
        budget = _min_budget(hc, w.args)
    hc = HCModule(model, budget, track_memory=True)  # always through the executor
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    for it in range(2):
        opt.zero_grad()
        opt_ref.zero_grad()
        la, ra = step(model, hc, w.args, seed=it)
        lb, rb = step(ref, ref, w.args, seed=it)
        assert torch.equal(la, lb)
        assert torch.equal(ra, rb)
        assert_same_grads(model, ref)
        assert_same_buffers(model, ref)
        opt.step()
        opt_ref.step()
    stats = hc.last_step_stats()
    assert stats.measured_peak_bytes > 0
    assert len(hc._cache) == 1


def test_module_plumbing() -> None:
    w = _build("resnet")
    model = w.model
    hc = HCModule(model, 0.5)
    assert list(hc.state_dict().keys()) == list(model.state_dict().keys())
    assert all(a is b for a, b in zip(hc.parameters(), model.parameters()))
    assert [n for n, _ in hc.named_parameters()] == [n for n, _ in model.named_parameters()]
    other = clone_model(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(1.0)
    hc.load_state_dict(other.state_dict())  # model keys load into the wrapper ...
    assert torch.equal(next(model.parameters()), next(other.parameters()))
    other.load_state_dict(hc.state_dict())  # ... and the wrapper's into a plain model
    hc.eval()
    assert not model.training and not hc.training
    hc.train()
    assert model.training


def test_eval_and_no_grad_run_the_plain_model(monkeypatch) -> None:
    w = _build("mlp")
    hc = HCModule(w.model, 0.5)

    def boom(*a, **k):
        raise AssertionError("must not capture")

    monkeypatch.setattr(hc_mod, "_capture_model", boom)
    with torch.no_grad():
        assert torch.equal(hc(*w.args), w.model(*w.args))
    hc.eval()
    assert torch.equal(hc(*w.args), w.model(*w.args))
    assert hc.plan is None


def test_new_input_shape_replans() -> None:
    w = _build("mlp")
    hc = HCModule(w.model, 0.5)
    hc(*w.args).backward()
    first = hc.plan
    x, y = w.args
    hc(x[:1], y[:1]).backward()
    assert len(hc._cache) == 2 and hc.plan is not first
    hc(*w.args).backward()
    assert hc.plan is first


def test_budget_type_and_argument_errors() -> None:
    model = torch.nn.Linear(2, 2)
    for bad in ([1], None, True, b"1GiB"):
        with pytest.raises(TypeError, match="budget"):
            HCModule(model, bad)
    with pytest.raises(ValueError, match="planner"):
        HCModule(model, 0.5, planner="magic")
    with pytest.raises(ValueError, match="fallback"):
        HCModule(model, 0.5, fallback="yes")
    with pytest.raises(TypeError, match="model"):
        HCModule("model", 0.5)


@pytest.mark.skipif(not have_planner(), reason="needs tiny_backprop.plan")
def test_budget_below_minimum_is_budget_error() -> None:
    w = _build("mlp")
    hc = HCModule(w.model, 1)
    with pytest.raises(tiny_backprop.BudgetError) as ei:
        hc(*w.args)
    assert ei.value.minimum_bytes > 1


class Loopy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(4)])

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
            if x.sum() > 1e9:  # data-dependent control flow: no graph capture
                x = x * 0
        return x.sum()


def test_uncapturable_model_raises_capture_error() -> None:
    hc = HCModule(Loopy(), 0.5)
    with pytest.raises(tiny_backprop.CaptureError):
        hc(torch.randn(2, 8))


def test_plan_without_recompute_runs_the_plain_forward() -> None:
    w = _build("mlp")
    hc = HCModule(w.model, 1.0)
    hc(*w.args).backward()
    assert not any(isinstance(n, Region) for n in hc.plan.tree)
    assert hc.last_step_stats().measured_peak_bytes is None  # not counted: plain forward
    tracked = HCModule(w.model, 1.0, track_memory=True)
    tracked(*w.args).backward()
    assert tracked.last_step_stats().measured_peak_bytes > 0
    hc_small = HCModule(w.model, 0.5)  # recomputes, through the executor, not counted
    w.model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    w.model(*w.args).backward()
    ref = [p.grad.clone() for p in w.model.parameters()]
    w.model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    hc_small(*w.args).backward()
    stats = hc_small.last_step_stats()
    assert stats.measured_peak_bytes is None
    assert stats.n_recomputes > 0 and stats.predicted_peak_bytes is not None
    assert all(torch.equal(a, p.grad) for a, p in zip(ref, w.model.parameters()))
    hc_small.track_memory = True  # switched on between steps: counted from then on
    w.model.zero_grad(set_to_none=True)
    torch.manual_seed(0)
    hc_small(*w.args).backward()
    assert hc_small.last_step_stats().measured_peak_bytes > 0
    assert all(torch.equal(a, p.grad) for a, p in zip(ref, w.model.parameters()))
