"""Measured op costs (`tiny_backprop.costs`): views cost the same at any size."""

from __future__ import annotations

import torch
from torch import nn

from tiny_backprop.costs import CostCache, measure
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
