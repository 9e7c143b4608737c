"""fallback="per_block": planning over block calls for models no graph capture handles.

Every check is exact (torch.equal) against the plain model run with the same seed.
"""

from __future__ import annotations

import gc
import logging

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import tiny_backprop
from tests._runtime_dev import (
    assert_same_buffers,
    assert_same_grads,
    clone_model,
    step,
)
from tiny_backprop import HCModule, zoo
from tiny_backprop import hc_module as hc_mod
from tiny_backprop.capture.blocks import find_blocks
from tiny_backprop.errors import CaptureError
from tiny_backprop.tree import Region


class MoEBlock(nn.Module):
    """Pre-norm top-1 mixture of experts; the loop over experts depends on the data."""

    def __init__(self, d: int, n_experts: int, sink: list) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.router = nn.Linear(d, n_experts)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
            for _ in range(n_experts))
        self.drop = nn.Dropout(0.2)
        self.sink = sink  # the model's list of router logits (a side output)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        h = self.ln(x).reshape(b * t, d)
        logits = self.router(h)
        self.sink.append(logits)
        gate, top = F.softmax(logits, dim=-1).max(dim=-1)
        out = torch.zeros_like(h)
        for e in range(len(self.experts)):
            idx = (top == e).nonzero().squeeze(1)
            if idx.numel():
                out = out.index_add(0, idx, self.experts[e](h[idx]) * gate[idx, None])
        return x + self.drop(out.reshape(b, t, d))


class TinyMoE(nn.Module):
    """Embedding, MoE blocks, LM head; loss = cross-entropy + a router z-loss."""

    def __init__(self, vocab: int = 40, d: int = 16, n_layers: int = 4, n_experts: int = 3) -> None:
        super().__init__()
        self.router_logits: list[torch.Tensor] = []
        self.emb = nn.Embedding(vocab, d)
        self.layers = nn.ModuleList(MoEBlock(d, n_experts, self.router_logits)
                                    for _ in range(n_layers))
        self.head = nn.Linear(d, vocab)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.router_logits.clear()
        x = self.emb(idx)
        for layer in self.layers:
            x = layer(x)
        loss = F.cross_entropy(self.head(x).flatten(0, 1), targets.flatten())
        z = sum(torch.logsumexp(lg, dim=-1).pow(2).mean() for lg in self.router_logits)
        return loss + 0.01 * z


def _moe() -> tuple[nn.Module, tuple]:
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = TinyMoE().train()
    idx = torch.randint(0, 40, (2, 12), generator=g)
    return model, (idx, torch.randint(0, 40, (2, 12), generator=g))


SMALL = dict(batch=2, seq=16, vocab=50, d_model=32, n_layers=4, n_heads=2, image=16)


def _zoo(name: str) -> tuple[nn.Module, tuple]:
    cfg = zoo.build(name, "small").config
    w = zoo.build(name, "small", overrides={k: v for k, v in SMALL.items() if k in cfg})
    return w.model.train(), w.args


@pytest.fixture
def no_capture(monkeypatch):
    """Make graph capture fail, forcing the fallback."""
    def fail(model, args, kwargs):
        raise CaptureError(f"{type(model).__name__}: capture disabled by the test")

    monkeypatch.setattr(hc_mod, "_capture_model", fail)


def _min_bytes(model: nn.Module, args: tuple) -> int:
    with pytest.raises(tiny_backprop.BudgetError) as ei:
        HCModule(model, 1, fallback="per_block")(*args)
    return ei.value.minimum_bytes


def _check_exact(model: nn.Module, args: tuple, budget, steps: int = 2) -> HCModule:
    ref = clone_model(model)
    if budget == "min":
        budget = _min_bytes(model, args)
    hc = HCModule(model, budget, fallback="per_block", track_memory=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_ref = torch.optim.SGD(ref.parameters(), lr=0.1)
    for it in range(steps):
        opt.zero_grad()
        opt_ref.zero_grad()
        la, ra = step(model, hc, args, seed=it)
        lb, rb = step(ref, ref, args, seed=it)
        assert torch.equal(la, lb)
        assert torch.equal(ra, rb)  # RNG state after the step
        assert_same_grads(model, ref)
        assert_same_buffers(model, ref)  # BatchNorm running stats updated once
        opt.step()
        opt_ref.step()
    stats = hc.last_step_stats()
    assert 0 < stats.measured_peak_bytes <= hc.plan.budget_bytes
    if budget != 1.0:
        assert any(isinstance(n, Region) for n in hc.plan.tree)
        assert stats.n_recomputes > 0
    return hc


BUDGETS = [1.0, 0.5, "min"]


@pytest.mark.parametrize("budget", BUDGETS)
def test_moe_exact(budget) -> None:
    model, args = _moe()
    _check_exact(model, args, budget)


@pytest.mark.parametrize("name", ["gpt2", "resnet"])
@pytest.mark.parametrize("budget", BUDGETS)
def test_zoo_forced_through_fallback_exact(no_capture, name, budget) -> None:
    model, args = _zoo(name)
    _check_exact(model, args, budget)


def test_moe_router_logits_keep_their_gradient() -> None:
    """The aux loss alone reaches the routers through recomputed regions."""
    model, args = _moe()
    ref = clone_model(model)
    hc = HCModule(model, "min" if False else 0.3, fallback="per_block")
    for m, fn in ((model, hc), (ref, ref)):
        torch.manual_seed(0)
        fn(*args)
        sum(lg.sum() for lg in m.router_logits[:4]).backward()
    assert any(isinstance(n, Region) for n in hc.plan.tree)
    for a, b in zip(model.layers, ref.layers):
        assert a.router.weight.grad is not None
        assert torch.equal(a.router.weight.grad, b.router.weight.grad)


def test_moe_without_fallback_raises_capture_error() -> None:
    model, args = _moe()
    with pytest.raises(CaptureError, match="per_block"):
        HCModule(model, 0.5)(*args)


def test_fallback_logs_once(caplog) -> None:
    model, args = _moe()
    hc = HCModule(model, 0.5, fallback="per_block")
    with caplog.at_level(logging.INFO, logger="tiny_backprop"):
        for _ in range(3):
            hc(*args).backward()
        hc(args[0][:1], args[1][:1]).backward()  # a new signature re-plans, logs no more
    msgs = [r for r in caplog.records if "per_block" in r.getMessage()]
    assert len(msgs) == 1 and "TinyMoE" in msgs[0].getMessage()
    assert len(hc._cache) == 2


def test_repeated_steps_hold_no_memory() -> None:
    model, args = _moe()
    hc = HCModule(model, 0.4, fallback="per_block", track_memory=True)
    peaks = []
    for _ in range(4):
        hc(*args).backward()
        gc.collect()
        assert hc._tracker.acct.live_bytes == 0 and hc._tracker.acct.n_live == 0
        peaks.append(hc.last_step_stats().measured_peak_bytes)
        assert len(model.router_logits) <= 2 * len(model.layers)
    assert len(set(peaks)) == 1


def test_find_blocks_prefers_the_block_list() -> None:
    model, _ = _zoo("gpt2")  # blocks (ModuleList) beats each block's mlp (Sequential)
    container, names, blocks = find_blocks(model)
    assert container == "blocks" and names[0] == "blocks.0" and len(blocks) == 4


def test_no_repeated_blocks_is_a_clear_error() -> None:
    class Flat(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 4)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent: no graph capture
                x = x * 2
            return self.a(x).sum()

    hc = HCModule(Flat(), 0.5, fallback="per_block")
    with pytest.raises(CaptureError, match="nn.ModuleList") as ei:
        hc(torch.randn(2, 4))
    assert "model.layers" in str(ei.value) and "Graph capture failed" in str(ei.value)


def test_blocks_called_out_of_order_is_a_clear_error() -> None:
    model, args = _moe()
    hc = HCModule(model, 0.5, fallback="per_block")
    hc(*args).backward()
    model.layers[0], model.layers[1] = model.layers[1], model.layers[0]
    with pytest.raises(RuntimeError, match="order"):
        hc(*args)
    assert "forward" not in model.layers[0].__dict__  # wrappers removed on error


class InplaceNet(nn.Module):
    """Blocks that write their input in place (ReLU(inplace=True) first); uncapturable."""

    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(8, 8)
        self.blocks = nn.Sequential(*[nn.Sequential(nn.ReLU(inplace=True), nn.Linear(8, 8),
                                                    nn.Dropout(0.3)) for _ in range(5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.inp(x))
        if h.sum() > 1e9:  # data-dependent control flow: no graph capture
            h = h * 0
        return h.pow(2).mean()


@pytest.mark.parametrize("budget", [0.5, "min"])
def test_blocks_writing_their_input_in_place_exact(budget) -> None:
    torch.manual_seed(0)
    _check_exact(InplaceNet().train(), (torch.randn(4, 8),), budget)


def test_failed_capture_leaves_shared_attributes_alone() -> None:
    model, args = _moe()
    sink = model.router_logits
    with pytest.raises(CaptureError):
        hc_mod._capture_model(model, args, {})
    assert model.router_logits is sink and all(b.sink is sink for b in model.layers)
    assert sink == []  # no traced values left behind
