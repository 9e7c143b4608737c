"""The executor on hand-written plan trees: exact losses, gradients, buffers, RNG."""

from __future__ import annotations

import pytest
import torch

from tests._runtime_dev import (
    assert_same_buffers,
    assert_same_grads,
    clone_model,
    even_bounds,
    fx_capture,
    step,
    trees,
)
from tiny_backprop import zoo
from tiny_backprop.runtime.interpreter import Executor
from tiny_backprop.tree import Keep, Region

TINY = {
    "gpt2": dict(batch=2, seq=16, vocab=50, d_model=32, n_layers=3, n_heads=2),
    "resnet": dict(batch=2, image=16),
    "unet": dict(batch=2, image=16),
    "mlp": dict(batch=4, d=16, n_layers=4),
    "transformer": dict(batch=2, seq=8, d_model=32, n_layers=2, n_heads=2),
}


def _overrides(name: str) -> dict:
    cfg = zoo.build(name, "small").config
    return {k: v for k, v in TINY[name].items() if k in cfg}


@pytest.mark.parametrize("name", ["resnet", "unet", "mlp"])
@pytest.mark.parametrize("tree_name", ["store_all", "per_stage", "nested", "outer"])
def test_zoo_models_exact(name: str, tree_name: str) -> None:
    w = zoo.build(name, "small", overrides=_overrides(name))
    model = w.model.train()
    ref = clone_model(model)
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, 7)
    ex = Executor(cap, model, bounds, trees(len(bounds))[tree_name])
    la, ra = step(model, ex, w.args)
    lb, rb = step(ref, ref, w.args)
    assert torch.equal(la, lb)
    assert torch.equal(ra, rb)  # RNG state after the step as in the plain run
    assert_same_grads(model, ref)
    assert_same_buffers(model, ref)  # BatchNorm running stats updated exactly once
    if tree_name != "store_all":
        assert ex.tracker.acct.n_recompute > 0
    assert ex.tracker.acct.live_bytes == 0  # everything released after backward


class SideOutputs(torch.nn.Module):
    """A router-like side output inside a recomputed stage feeds an auxiliary loss."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Linear(8, 8)
        self.router = torch.nn.Linear(8, 4)
        self.b = torch.nn.Linear(8, 8)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x, scale):
        h = self.drop(torch.relu(self.a(x)))
        logits = self.router(h)
        h = h * torch.softmax(logits, -1).sum(-1, keepdim=True)
        y = self.b(h) * scale
        return {"out": y, "aux": logits}


def test_side_outputs_kwargs_dict_and_input_grads() -> None:
    torch.manual_seed(0)
    model = SideOutputs()
    ref = clone_model(model)
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, 4)
    ex = Executor(cap, model, bounds, (Region(0, 3, (Region(0, 2, (Keep(0), Keep(1))), Keep(2))),
                                       Keep(3)))
    x = torch.randn(5, 8, requires_grad=True)
    xr = x.detach().clone().requires_grad_()
    s = torch.tensor(2.0, requires_grad=True)
    sr = s.detach().clone().requires_grad_()

    def loss_of(out):
        return out["out"].pow(2).mean() + 0.1 * out["aux"].logsumexp(-1).mean()

    torch.manual_seed(3)
    la = loss_of(ex(x, scale=s))
    la.backward()
    torch.manual_seed(3)
    lb = loss_of(ref(xr, scale=sr))
    lb.backward()
    assert torch.equal(la, lb)
    assert_same_grads(model, ref)
    assert torch.equal(x.grad, xr.grad) and torch.equal(s.grad, sr.grad)
    assert model.router.weight.grad is not None and model.router.weight.grad.abs().sum() > 0


def test_autograd_grad_and_backward_inputs() -> None:
    torch.manual_seed(0)
    w = zoo.build("mlp", "small", overrides=_overrides("mlp"))
    model = w.model
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, 5)
    ex = Executor(cap, model, bounds, trees(len(bounds))["nested"])
    params = list(model.parameters())
    g1 = torch.autograd.grad(ex(*w.args), params)
    g2 = torch.autograd.grad(model(*w.args), params)
    assert all(torch.equal(a, b) for a, b in zip(g1, g2))
    first = params[0]
    ex(*w.args).backward(inputs=[first])
    assert torch.equal(first.grad, g2[0])
    assert all(p.grad is None for p in params[1:])


class InplaceViews(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.l1 = torch.nn.Linear(12, 12)
        self.act = torch.nn.ReLU(inplace=True)
        self.l2 = torch.nn.Linear(12, 12)
        self.frozen = torch.nn.Linear(12, 12)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        h = self.l1(x)
        h = self.act(h)
        h = h.view(-1, 3, 4).transpose(1, 2)
        h = h.reshape(-1, 12)
        h = self.frozen(h)
        h.add_(1.0)
        h = torch.relu_(h)
        return self.l2(h).sum()


@pytest.mark.parametrize("n", [3, 5, 7])
def test_inplace_views_frozen_layers_at_boundaries(n: int) -> None:
    torch.manual_seed(0)
    model = InplaceViews()
    ref = clone_model(model)
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, n)
    for tree in trees(len(bounds)).values():
        model.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)
        x = torch.randn(4, 12, requires_grad=True)  # an input requiring grad (LoRA-like)
        xr = x.detach().clone().requires_grad_()
        ex = Executor(cap, model, bounds, tree)
        la, _ = step(model, ex, (x,))
        lb, _ = step(ref, ref, (xr,))
        assert torch.equal(la, lb)
        assert_same_grads(model, ref)
        assert torch.equal(x.grad, xr.grad)


def test_retain_graph_second_backward() -> None:
    torch.manual_seed(0)
    w = zoo.build("mlp", "small", overrides=_overrides("mlp"))
    model = w.model
    ref = clone_model(model)
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, 5)
    ex = Executor(cap, model, bounds, trees(len(bounds))["nested"])
    la = ex(*w.args)
    la.backward(retain_graph=True)
    la.backward()
    lb = ref(*w.args)
    lb.backward(retain_graph=True)
    lb.backward()
    assert_same_grads(model, ref)


def test_bad_trees_are_rejected() -> None:
    model = InplaceViews()
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, 3)
    with pytest.raises(ValueError, match="expected stage 1"):
        Executor(cap, model, bounds, (Keep(0), Keep(2), Keep(1)))
    with pytest.raises(ValueError, match="covers stages"):
        Executor(cap, model, bounds, (Keep(0), Keep(1)))
    with pytest.raises(ValueError, match="never-recompute"):
        Executor(cap, model, bounds, (Region(0, 2, (Keep(0), Keep(1))), Keep(2)),
                 never_recompute=[False, True, False])
