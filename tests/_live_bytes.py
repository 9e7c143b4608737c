"""Live activation bytes of one real training step on CPU, without an allocator.

Every storage an op outputs during the step (forward, recomputation and backward),
other than the model's parameters, their ``.grad`` and buffers and the step's inputs, is
counted from the op that made it until it is freed (a ``weakref.finalize`` on the
storage); the peak of the sum is what ``torch.cuda.max_memory_allocated`` would count on
a GPU without the caching allocator's rounding. It includes what the planner's
prediction with working bytes models (saved tensors, held inputs, kept outputs,
gradients in flight) and every transient the model leaves out.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode


class _Live:
    def __init__(self, skip: set[int]) -> None:
        self.skip = skip
        self.sizes: dict[int, int] = {}
        self.cur = 0
        self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        s = t.untyped_storage()
        key = s._cdata
        if key in self.skip or key in self.sizes:
            return
        self.sizes[key] = s.nbytes()
        self.cur += self.sizes[key]
        self.peak = max(self.peak, self.cur)
        weakref.finalize(s, self._free, key)

    def _free(self, key: int) -> None:
        self.cur -= self.sizes.pop(key)


class _Outputs(TorchDispatchMode):
    def __init__(self, live: _Live) -> None:
        super().__init__()
        self.live = live

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.live.track(t)
        return out


def step_peak_bytes(fn: Callable[..., Any], model: torch.nn.Module, args: tuple,
                    kwargs: dict | None = None) -> int:
    """Peak live activation bytes of ``fn(*args, **kwargs)`` (a loss, or a tuple whose
    first item is one) and its backward. Parameters without ``.grad`` get a zero one
    first, so that backward accumulates in place (bytes)."""
    kwargs = kwargs or {}
    for p in model.parameters():
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    skip = {p.untyped_storage()._cdata for p in model.parameters()}
    skip |= {p.grad.untyped_storage()._cdata for p in model.parameters()}
    skip |= {b.untyped_storage()._cdata for b in model.buffers()}
    skip |= {a.untyped_storage()._cdata for a in pytree.tree_leaves((args, kwargs))
             if isinstance(a, torch.Tensor)}
    live = _Live(skip)
    with _Outputs(live):
        out = fn(*args, **kwargs)
        loss = out if isinstance(out, torch.Tensor) else out[0]
        loss.backward()
        del out, loss
    return live.peak
