"""Op-level keep policy inside a region (selective activation checkpointing, ours).

While a region's calls run in forward, `KeepOps(frame, serve=False)` stores the outputs
of the ops its spec keeps, matched by (aten op name, occurrence within the region); while
the region is recomputed, `KeepOps(frame, serve=True)` hands those outputs back instead
of computing them again (an op writing its first argument in place, such as the
``bernoulli_`` that draws a dropout mask, keeps a copy of the result and writes it back).
A kept random op also stores the RNG state after it, restored
when it is served, so the ops after it draw the same numbers. A Bernoulli draw (the
dropout mask) is all zeros and ones, so it is kept as a bool tensor (1 byte per
element) and converted back exactly when served. A served output is used
only if the op's arguments have the shapes and dtypes they had in forward; otherwise the
op is computed (the result is the same, only slower).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

if TYPE_CHECKING:
    from .accounting import Tracker
    from .frames import Frame


def _signature(args: Any, kwargs: Any) -> tuple:
    return tuple((tuple(v.shape), v.dtype, v.device) if isinstance(v, torch.Tensor) else type(v)
                 for v in pytree.tree_leaves((args, kwargs)))


#: Ops whose outputs are only 0 and 1: kept as bool, converted back to their dtype.
MASK_OPS = frozenset({"aten.bernoulli_", "aten.bernoulli"})


def _as_mask(v: Any) -> Any:
    """`v` as a `_Mask` (a new bool tensor); a bool or complex tensor as a copy."""
    if not isinstance(v, torch.Tensor):
        return v
    if v.dtype != torch.bool and not v.is_complex():
        return _Mask(v.detach().to(torch.bool), v.dtype)
    return v.detach().clone()  # never the tensor an in-place op may write again


class _Mask:
    """A 0/1 tensor kept as bool, with the dtype to convert it back to."""

    __slots__ = ("bits", "dtype")

    def __init__(self, bits: torch.Tensor, dtype: torch.dtype) -> None:
        self.bits = bits
        self.dtype = dtype

    def value(self) -> torch.Tensor:
        return self.bits.to(self.dtype)


class OpStore:
    """Kept op outputs of one frame: key -> (argument signature, outputs, RNG, holds)."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.items: dict[tuple[str, int], tuple[tuple, Any, Any, list[int]]] = {}

    def put(self, key: tuple[str, int], sig: tuple, out: Any, rng: Any) -> None:
        detached = pytree.tree_map(
            lambda v: v.detach() if isinstance(v, torch.Tensor) else v, out)
        holds = [self.tracker.hold(v.bits if isinstance(v, _Mask) else v)
                 for v in pytree.tree_leaves(detached)
                 if isinstance(v, (torch.Tensor, _Mask))]
        self.items[key] = (sig, detached, rng, holds)

    def take(self, key: tuple[str, int], sig: tuple) -> tuple[bool, Any, Any]:
        hit = self.items.pop(key, None)
        if hit is None:
            return False, None, None
        for k in hit[3]:
            self.tracker.release(k)
        if hit[0] != sig:
            return False, None, None
        out = pytree.tree_map(lambda v: v.detach() if isinstance(v, torch.Tensor) else v, hit[1])
        return True, out, hit[2]

    def clear(self) -> None:
        for _, _, _, holds in self.items.values():
            for k in holds:
                self.tracker.release(k)
        self.items = {}


def _writes_only_self(func: Any) -> bool:
    from ..trace.tracer import _writes_only_self as check

    return check(func)


def _rng_after(devices: list[int]) -> tuple:
    return (torch.get_rng_state(), [(d, torch.cuda.get_rng_state(d)) for d in devices])


class _KeepOpsMode(TorchDispatchMode):
    def __init__(self, frame: Frame, serve: bool) -> None:
        super().__init__()
        self.frame = frame
        self.keep = frame.spec.keep_ops
        self.serve = serve
        # counted over all of the region's calls: one dict per run, kept on the frame
        self.counts = frame.op_counts_serve if serve else frame.op_counts_store

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = str(func.overloadpacket)
        if name.startswith("prim."):
            return func(*args, **kwargs)
        occ = self.counts.get(name, 0)
        self.counts[name] = occ + 1
        key = (name, occ)
        if key not in self.keep:
            return func(*args, **kwargs)
        in_place = func._schema.is_mutable
        if in_place and not (_writes_only_self(func) and args
                             and isinstance(args[0], torch.Tensor)):
            return func(*args, **kwargs)
        sig = _signature(args, kwargs)
        random = torch.Tag.nondeterministic_seeded in func.tags
        devices = sorted(self.frame.cuda_devices)
        if self.serve:
            ok, out, rng = self.frame.ops.take(key, sig)
            if ok:
                if rng is not None:
                    torch.set_rng_state(rng[0])
                    for d, s in rng[1]:
                        torch.cuda.set_rng_state(s, d)
                if in_place:  # write the kept result where the op would have
                    args[0].copy_(out.bits if isinstance(out, _Mask) else out)
                    return args[0]
                return out.value() if isinstance(out, _Mask) else out
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if name in MASK_OPS:  # bool bits (a new tensor): no float copy first
            kept = _as_mask(args[0] if in_place else out)
        else:
            kept = args[0].clone() if in_place else out
        self.frame.ops.put(key, sig, kept, _rng_after(devices) if random else None)
        return out


def KeepOps(frame: Frame, serve: bool) -> Any:  # noqa: N802 - a context manager factory
    """The keep-ops dispatch mode of `frame` (a no-op context when it keeps no op)."""
    if not frame.spec.keep_ops:
        return nullcontext()
    return _KeepOpsMode(frame, serve)
