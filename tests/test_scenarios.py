"""Eager behaviour that differs from the step-0 trace still trains exactly (round 1 was
silently wrong in each of these): the model's own forward runs every step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests._exact import assert_exact
from tests._hf import build as build_hf


class _Scale(torch.autograd.Function):
    """Identity forward, gradient scaled by 3 (a custom backward export would lose)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3.0 * g + 0.0 * x


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)
        self.act = nn.GELU()
        self.drop = nn.Dropout(0.1)
        self.scale = 1.0
        self.custom = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.drop(self.act(self.fc1(x)))
        if self.custom:
            h = _Scale.apply(h)
        return x + self.scale * self.fc2(h)


class Net(nn.Module):
    def __init__(self, d: int = 16, n: int = 6) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block(d) for _ in range(n))
        self.head = nn.Linear(d, 1)
        self.n_used = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for b in self.blocks[: self.n_used]:
            x = b(x)
        return self.head(x).pow(2).mean()


X = torch.randn(32, 16, generator=torch.Generator().manual_seed(3))


def _inputs(step: int):
    return (X,), {}


def _exact_with_change(change, budget=0.5, steps=3) -> None:
    torch.manual_seed(0)
    model = Net().train()

    def prepare(m: nn.Module, i: int) -> None:
        if i == 1:
            change(m)

    assert_exact(model, _inputs, budget, steps=steps, prepare=prepare)


def test_dropout_p_changed_after_step_0() -> None:
    def change(m):
        for b in m.blocks:
            b.drop.p = 0.5
    _exact_with_change(change)


def test_activation_changed_after_step_0() -> None:
    def change(m):
        m.blocks[2].act = nn.Tanh()
    _exact_with_change(change)


def test_forward_hook_added_after_step_0() -> None:
    def change(m):
        m.blocks[1].register_forward_hook(lambda mod, a, out: out * 0.5)
        m.blocks[3].fc1.register_forward_hook(lambda mod, a, out: F.relu(out))
    _exact_with_change(change)


def test_python_attribute_read_in_forward_changed() -> None:
    def change(m):
        m.blocks[0].scale = 0.25
        m.n_used = 4  # a layer count
    _exact_with_change(change)


def test_custom_autograd_function_backward_is_called() -> None:
    def change(m):
        for b in m.blocks:
            b.custom = True
    _exact_with_change(change)
    torch.manual_seed(0)
    model = Net().train()
    for b in model.blocks:
        b.custom = True
    assert_exact(model, _inputs, 0.5)  # from step 0 too


def test_labels_aliasing_input_ids_then_separate() -> None:
    model, _ = build_hf("gpt2")
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(5))

    def inputs(step: int):
        if step == 0:
            return (), {"input_ids": ids, "labels": ids}  # one tensor for both
        other = torch.roll(ids, 1, dims=1)
        return (), {"input_ids": ids.clone(), "labels": other}
    assert_exact(model, inputs, "min")


def test_inner_model_eval_after_step_0_batchnorm() -> None:
    from tiny_backprop import zoo
    w = zoo.build("resnet", "small", overrides=dict(batch=2, image=16))

    def prepare(m, i):
        if i == 1:
            m.blocks[0].eval()  # one inner module in eval: its BatchNorm stats freeze
    # 0.6: its minimum is 0.515 of store-all (the convolutions' scratch counted)
    assert_exact(w.model.train(), lambda i: (w.args, w.kwargs), 0.6, prepare=prepare)


def test_tied_weights_after_load_state_dict_assign() -> None:
    model, inputs = build_hf("gpt2")
    state = {k: v.clone() for k, v in model.state_dict().items()}

    def prepare(m, i):
        if i == 1:
            m.load_state_dict(state, assign=True)
            m.tie_weights()
    assert_exact(model, inputs, "min", prepare=prepare)


@pytest.mark.parametrize("kind", ["bert", "t5"])
def test_bf16_autocast_equal_to_the_plain_model_under_autocast(kind) -> None:
    model, inputs = build_hf(kind)
    assert_exact(model, inputs, "min", autocast=torch.bfloat16)


def test_bf16_autocast_zoo_gpt2() -> None:
    from tiny_backprop import zoo
    w = zoo.build("gpt2", "small")
    assert_exact(w.model.train(), lambda i: (w.args, w.kwargs), 0.5, autocast=torch.bfloat16)


def test_stale_plan_is_replanned_once_logged(caplog) -> None:
    import logging

    from tiny_backprop import HCModule
    torch.manual_seed(0)
    model = Net().train()
    hc = HCModule(model, 0.5)
    hc(X).backward()
    first = hc.plan
    for b in model.blocks:
        b.custom = True  # more saved tensors inside each block: the trace is stale
    with caplog.at_level(logging.INFO, logger="tiny_backprop"):
        for _ in range(3):
            hc(X).backward()
    assert hc.plan is not first  # re-traced
    assert sum("differed from its trace" in r.getMessage() for r in caplog.records) == 1
    ref = copy.deepcopy(model)
    assert ref is not None
