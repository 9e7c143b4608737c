"""Measured op costs (`tiny_backprop.costs`): views cost the same at any size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tiny_backprop.costs import CostCache, _fit, measure
from tiny_backprop.trace import trace_model


class _Views(nn.Module):
    """Views of three activations of growing size (only two signatures per op name are
    timed: the third is costed from the rates measured)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, tiny: torch.Tensor, small: torch.Tensor, big: torch.Tensor
                ) -> torch.Tensor:
        return sum((t * self.w).view(-1).sum() for t in (tiny, small, big))


def test_views_cost_a_call_not_their_elements() -> None:
    torch.manual_seed(0)
    tr = trace_model(_Views(), (torch.randn(8, 8), torch.randn(64, 64), torch.randn(512, 512)),
                     {})
    costs = measure(tr, CostCache())
    views = [op for op in tr.ops if op.name == "aten.view"]
    muls = [op for op in tr.ops if op.name == "aten.mul"]
    assert len(views) == 3 and len(muls) == 3
    big_view = max(views, key=lambda op: op.elements)
    big_mul = max(muls, key=lambda op: op.elements)
    # a view of 262144 elements costs about a call (microseconds), far below a mul of
    # the same size; scaling the small views' per-element rate would make it ~64x theirs
    assert costs[big_view.index] < 0.5 * costs[big_mul.index]


class _Muls(nn.Module):
    """Elementwise muls of four sizes: the smallest and the largest are timed, the two
    between are costed from the line through them."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        return sum((t * self.w).sum() for t in xs)


def test_untimed_sizes_cost_on_the_line_between_the_timed_ones() -> None:
    torch.manual_seed(0)
    sizes = [(4, 4), (64, 64), (256, 256), (1024, 1024)]
    tr = trace_model(_Muls(), tuple(torch.randn(*s) for s in sizes), {})
    costs = measure(tr, CostCache())
    muls = sorted((op for op in tr.ops if op.name == "aten.mul"), key=lambda op: op.elements)
    assert len(muls) == 4
    c = [costs[op.index] for op in muls]
    # the line between the smallest and the largest: non-decreasing in size, and the
    # 64x64 one is not the 4x4 one's per-element rate times its 256x more elements
    assert c[1] <= c[2] <= c[3]
    assert c[1] < 0.5 * c[0] * muls[1].elements / muls[0].elements
    fixed, slope = _fit([(muls[0].elements, c[0]), (muls[3].elements, c[3])])
    for op, got in zip(muls[1:3], c[1:3]):
        assert got == pytest.approx(fixed + slope * op.elements, rel=1e-6)


class _Mixed(nn.Module):
    """A softmax (single output), a layer norm (three outputs) and a view."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.softmax(-1)).view(-1).sum()


def test_ops_with_an_out_overload_are_timed_into_their_warm_up_outputs() -> None:
    from torch.utils._python_dispatch import TorchDispatchMode

    from tiny_backprop.costs import REPEATS, time_signature

    class _Calls(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[str] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            self.seen.append(str(func))
            return func(*args, **(kwargs or {}))

    tr = trace_model(_Mixed(), (torch.randn(16, 32),), {})
    by_name = {str(sig.op): sig for sig in tr.signatures}
    # op -> (calls of the op itself, calls of its out overload): one warm-up call of
    # each (the first makes the buffers), then the timed ones
    expect = {
        "aten._softmax.default": (1, 1 + REPEATS),
        "aten.native_layer_norm.default": (1, 1 + REPEATS),
        "aten.view.default": (1 + REPEATS, 0),  # a view: no copy into a buffer
    }
    for name, (own, out) in expect.items():
        calls = _Calls()
        with calls:
            sec = time_signature(by_name[name])
        assert sec > 0
        packet = name.rsplit(".", 1)[0]
        assert calls.seen.count(name) == own, (name, calls.seen)
        assert calls.seen.count(packet + ".out") == out, (name, calls.seen)


class _Losses(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2.0
        return nn.functional.mse_loss(y, x) + y.mean() + y.sum(dim=1).sum()


def test_out_variants_match_their_overload_and_never_resize(capfd: pytest.CaptureFixture
                                                             ) -> None:
    from tiny_backprop.costs import _out_overload, time_signature

    a = torch.ops.aten
    # the packet's `.out` belongs to one overload: mean.out is mean.dim's
    assert _out_overload(a.mean.default)[0] is a.mean.dtype_out
    assert _out_overload(a.mean.dim)[0] is a.mean.out
    assert _out_overload(a.sum.dim_IntList)[0] is a.sum.IntList_out
    assert _out_overload(a.view.default) is None
    tr = trace_model(_Losses(), (torch.randn(16, 32),), {})
    names = {str(sig.op) for sig in tr.signatures}
    assert {"aten.mse_loss.default", "aten.mean.default"} <= names, names
    for sig in tr.signatures:
        assert time_signature(sig) > 0
    # mse_loss.out resizes its output to the unreduced loss and back: timed as called,
    # without torch's "An output with one or more elements was resized" warning
    assert "resized" not in capfd.readouterr().err
