"""The scratch memory of CPU convolutions (`tiny_backprop.scratch.estimate_scratch`)."""

from __future__ import annotations

import torch
from torch import nn

from tiny_backprop.scratch import estimate_scratch
from tiny_backprop.trace import trace_model


class _Convs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 16, 3, 1, 1)  # its input needs no gradient
        self.down = nn.Conv2d(16, 32, 3, 2, 1, bias=False)  # stride 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.first(x))).sum()


def test_convolutions_get_copies_of_their_tensors_as_scratch() -> None:
    x = torch.randn(2, 3, 32, 32)
    tr = trace_model(_Convs(), (x,), {})
    est = estimate_scratch(tr)
    convs = [op for op in tr.ops if op.name == "aten.convolution"]
    assert sorted(est) == [op.index for op in convs]  # nothing else has scratch
    first, down = convs
    x_b, w1 = x.numel() * 4, 16 * 3 * 9 * 4
    y1 = 2 * 16 * 32 * 32 * 4
    assert est[first.index] == (max(x_b, y1) + w1, y1 + w1)  # no input gradient
    w2, y2 = 32 * 16 * 9 * 4, 2 * 32 * 16 * 16 * 4
    assert est[down.index] == (max(y1, y2) + w2, 2 * y1 + y2 + w2)  # strided: input twice
