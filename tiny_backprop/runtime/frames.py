"""One execution of a recompute region: held inputs, replay state, recomputed tensors.

The region's calls run under a pack hook that keeps nothing: each saved tensor becomes a
`_Handle` (frame, index). The autograd graph is the normal one, so gradients reach every
output (side outputs included), parameters and inputs. On the first unpack of a handle
the frame re-runs its module calls from the held inputs with the RNG and autocast state
of the original calls, through the runtime's call dispatch (nested regions open as
sub-frames), and matches saved tensors by pack order. Running statistics of modules
with buffers (BatchNorm) are restored after a recompute, so they move once per step.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils import _pytree as pytree

from .keep_ops import KeepOps, OpStore
from .spec import RegionSpec

if TYPE_CHECKING:
    from .eager import EagerRuntime

Forward = Callable[..., Any]


class _Handle:
    """What autograd holds instead of a saved tensor inside a region."""

    __slots__ = ("frame", "index")

    def __init__(self, frame: Frame, index: int) -> None:
        self.frame = frame
        self.index = index


def _unpack_handle(h: _Handle) -> torch.Tensor:
    h.frame.tracker.count_unpack()  # one per autograd unpack (sub-frames do not recount)
    return h.frame.unpack(h.index)


def _never_unpack(_: object) -> torch.Tensor:
    raise RuntimeError("tiny_backprop: a recomputation's own graph was used for backward")


def autocast_state() -> tuple[tuple[str, bool, torch.dtype], ...]:
    """(device type, enabled, dtype) of autocast on CPU and, if available, CUDA."""
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return tuple((d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in devices)


@dataclass
class _Held:
    """A held tensor input: the detached value, whether it required grad, its version."""

    value: torch.Tensor
    requires_grad: bool
    version: int
    key: int  # accountant key (0: not counted)
    copy: bool  # a copy taken because the call writes it in place


@dataclass
class _Call:
    """How to replay one call of the region: its arguments and RNG/autocast state."""

    path: str
    leaves: list[tuple[str, Any]]  # ("held", _Held) | ("chain", j) | ("const", value)
    spec: Any
    cpu_rng: torch.Tensor
    cuda_rng: list[tuple[int, torch.Tensor]]
    autocast: tuple[tuple[str, bool, torch.dtype], ...]
    cache_enabled: bool


@dataclass
class _SubSlot:
    """Saved tensor `index` of a sub-frame, standing at one index of its parent."""

    frame: Frame
    index: int


@dataclass
class _Outputs:
    """Output leaves of the previous call and their versions (to chain into the next)."""

    leaves: list[Any] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)

    @staticmethod
    def of(out: Any) -> _Outputs:
        leaves = pytree.tree_leaves(out)
        return _Outputs(leaves, [v._version if isinstance(v, torch.Tensor) else 0
                                 for v in leaves])


class Frame:
    """One execution of a `RegionSpec`.

    Args:
        spec: the region.
        runtime: the runtime that opened it (module forwards, accountant).
    """

    def __init__(self, spec: RegionSpec, runtime: EagerRuntime) -> None:
        self.spec = spec
        self.runtime = runtime
        self.tracker = runtime.tracker
        self.count = 0  # saved tensors packed by the original calls
        self.calls: list[_Call] = []
        self.prev: _Outputs | None = None
        self.held: list[_Held] = []
        self.storage: dict[int, tuple[torch.Tensor, int]] = {}
        self.subs: dict[int, _SubSlot] = {}
        self.sub_pending: dict[int, int] = {}  # id(sub frame) -> handles not yet unpacked
        self.ops = OpStore(self.tracker)
        self.op_counts_store: dict[str, int] = {}  # ops seen per name in the original calls
        self.op_counts_serve: dict[str, int] = {}  # ... in the current recomputation
        self.cuda_devices: set[int] = set()
        self.broken: str | None = None  # why this frame cannot be recomputed

    # -- original calls ---------------------------------------------------------

    def expects(self, path: str, position: int) -> bool:
        """True if the call `position` of this region is a call of `path`."""
        return position < len(self.spec.calls) and self.spec.calls[position].path == path

    @property
    def position(self) -> int:
        """Index (in spec.calls) of the next call this region expects."""
        return len(self.calls)

    @property
    def complete(self) -> bool:
        return len(self.calls) >= len(self.spec.calls)

    def add_call(self, path: str, args: tuple, kwargs: dict) -> None:
        """Record the call about to run now: hold its inputs, snapshot RNG/autocast."""
        copy = bool(self.spec.mutating) and self.spec.mutating[len(self.calls)]
        leaves, spec = pytree.tree_flatten((args, kwargs))
        prev = self.prev
        chained: dict[int, tuple[int, int]] = {}
        if prev is not None:
            chained = {id(v): (j, ver) for j, (v, ver) in enumerate(zip(prev.leaves, prev.versions))
                       if isinstance(v, torch.Tensor)}
        enc: list[tuple[str, Any]] = []
        devices: set[int] = set()
        for v in leaves:
            if not isinstance(v, torch.Tensor):
                enc.append(("const", v))
                continue
            if v.is_cuda:
                devices.add(v.get_device())
            hit = chained.get(id(v))
            if hit is not None and hit[1] == v._version and not copy:
                enc.append(("chain", hit[0]))
                continue
            rg = v.requires_grad
            d = v.detach().clone() if copy else v.detach()
            key = 0 if self.tracker.is_excluded(d) else self.tracker.hold(d)
            h = _Held(d, rg, d._version, key, copy)
            self.held.append(h)
            enc.append(("held", h))
        self.cuda_devices |= devices
        self.calls.append(_Call(
            path, enc, spec, torch.get_rng_state(),
            [(d, torch.cuda.get_rng_state(d)) for d in sorted(devices)],
            autocast_state(), torch.is_autocast_cache_enabled()))

    def after_call(self, out: Any) -> None:
        """The call just recorded returned `out` (chained into the next call)."""
        self.prev = None if self.complete else _Outputs.of(out)

    def pack_drop(self, t: torch.Tensor) -> _Handle:
        """Pack hook of the original calls: keep a handle, not the tensor."""
        h = _Handle(self, self.count)
        self.count += 1
        self.tracker.count_pack()
        return h

    @contextmanager
    def original(self, pack: Callable[..., Any], unpack: Callable[..., Any]) -> Iterator[None]:
        """Hooks of this region's original calls: `pack`/`unpack` and its kept ops."""
        with saved_tensors_hooks(pack, unpack), KeepOps(self, serve=False):
            yield

    # -- lifetime ---------------------------------------------------------------

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop holding inputs, kept op outputs and recomputed tensors."""
        for h in self.held:
            self.tracker.release(h.key)
        self.held = []
        self.calls = []
        self.ops.clear()
        self._drop_recomputed()

    def _drop_recomputed(self) -> None:
        for _, key in self.storage.values():
            self.tracker.release(key)
        self.storage = {}
        subs = {id(s.frame): s.frame for s in self.subs.values()}
        self.subs = {}
        self.sub_pending = {}
        for sub in subs.values():
            sub.close()

    # -- backward ---------------------------------------------------------------

    def unpack(self, index: int) -> torch.Tensor:
        """Saved tensor number `index` of this region, recomputing the region if needed."""
        if index not in self.subs and index not in self.storage:
            self.recompute()
        slot = self.subs.pop(index, None)
        if slot is not None:
            value = slot.frame.unpack(slot.index)
            left = self.sub_pending.get(id(slot.frame), 1) - 1
            self.sub_pending[id(slot.frame)] = left
            if left <= 0:
                self.sub_pending.pop(id(slot.frame), None)
                slot.frame.close()
            return value
        hit = self.storage.pop(index, None)
        if hit is None:
            raise RuntimeError(
                f"tiny_backprop: saved tensor {index} of region {self.spec.label()} was not "
                "re-created by recomputation")
        self.tracker.release(hit[1])
        return hit[0]

    @contextmanager
    def _replay_state(self) -> Iterator[None]:
        """Grad on, RNG forked, running statistics restored afterwards."""
        mods = {id(m): m for c in self.spec.calls
                for m in self.runtime.module(c.path).modules()}
        saved = [(b, b.detach().clone()) for m in mods.values()
                 for b in m.buffers(recurse=False)]
        with ExitStack() as stack:
            stack.enter_context(torch.random.fork_rng(devices=sorted(self.cuda_devices)))
            stack.enter_context(torch.enable_grad())
            try:
                yield
            finally:
                with torch.no_grad():
                    for b, v in saved:
                        b.copy_(v)

    def _arguments(self, call: _Call, prev: _Outputs | None) -> tuple[tuple, dict]:
        values = []
        for kind, x in call.leaves:
            if kind == "held":
                h: _Held = x
                if h.value._version != h.version and not self.tracker.is_excluded(h.value):
                    raise RuntimeError(
                        f"tiny_backprop: an input of {call.path or 'the model'} in region "
                        f"{self.spec.label()} was modified in place after the region ran; "
                        "it cannot be recomputed")
                v = h.value.detach()
                if h.copy:
                    v = v.clone()
                if h.requires_grad:
                    v.requires_grad_(True)
                values.append(v)
            elif kind == "chain":
                assert prev is not None
                values.append(prev.leaves[x])
            else:
                values.append(x)
        args, kwargs = pytree.tree_unflatten(values, call.spec)
        return args, kwargs

    def recompute(self) -> None:
        """Re-run the region's calls from the held inputs (nested regions open again)."""
        if self.broken:
            raise RuntimeError(f"tiny_backprop: region {self.spec.label()} cannot be "
                               f"recomputed: {self.broken}")
        if not self.calls:
            raise RuntimeError(f"tiny_backprop: region {self.spec.label()} was released "
                               "before backward used it (backward through it twice needs "
                               "retain_graph=True)")
        t0 = time.perf_counter()
        self.tracker.event("recompute", self.spec.label())
        self._drop_recomputed()
        self.op_counts_serve = {}
        rec = Recorder(self)
        rt = self.runtime
        with self._replay_state(), rt.recompute_scope(self, rec), KeepOps(self, serve=True):
            prev: _Outputs | None = None
            for call in self.calls:
                args, kwargs = self._arguments(call, prev)
                torch.set_rng_state(call.cpu_rng)
                for d, s in call.cuda_rng:
                    torch.cuda.set_rng_state(s, d)
                with ExitStack() as stack:
                    for dev, enabled, dtype in call.autocast:
                        stack.enter_context(torch.autocast(dev, dtype=dtype, enabled=enabled,
                                                           cache_enabled=call.cache_enabled))
                    stack.enter_context(saved_tensors_hooks(rec.store, _never_unpack))
                    out = rt.call(call.path, args, kwargs)
                prev = _Outputs.of(out)
            del prev
        self.ops.clear()  # kept op outputs served: now held by the recomputed tensors
        if rec.counter != self.count:
            self._drop_recomputed()
            raise RuntimeError(
                f"tiny_backprop: recomputing region {self.spec.label()} saved {rec.counter} "
                f"tensors where its forward saved {self.count}: the module's behaviour "
                "changed between forward and backward")
        for sub_id, n in rec.sub_counts.items():
            self.sub_pending[sub_id] = n
        self.tracker.recompute(rec.stored_bytes, time.perf_counter() - t0)
        self.tracker.event("recompute", self.spec.label())


class Recorder:
    """Saved-tensor hooks of one recomputation: numbers saved tensors in pack order.

    ``store`` keeps (and counts) a saved tensor under its number; a sub-frame's pack hook
    (``sub_pack``) gives the number to the sub-frame instead (it recomputes it later).
    The frame is referenced weakly: a recomputation's graph kept alive by a side effect
    never keeps a frame's held tensors alive.
    """

    def __init__(self, frame: Frame) -> None:
        self._frame = weakref.ref(frame)
        self.counter = 0
        self.stored_bytes = 0
        self.sub_counts: dict[int, int] = {}

    @property
    def frame(self) -> Frame:
        frame = self._frame()
        if frame is None:
            raise RuntimeError("tiny_backprop: a recomputation outlived its region")
        return frame

    def store(self, t: torch.Tensor) -> None:
        frame = self.frame
        d = t.detach()
        key = frame.tracker.hold(d)
        if not frame.tracker.is_excluded(d):
            self.stored_bytes += d.untyped_storage().nbytes()
        frame.storage[self.counter] = (d, key)
        self.counter += 1

    def sub_pack(self, sub: Frame) -> Callable[[torch.Tensor], None]:
        """Pack hook for the original calls of nested region `sub`."""
        def pack(t: torch.Tensor) -> None:
            self.frame.subs[self.counter] = _SubSlot(sub, sub.count)
            self.sub_counts[id(sub)] = self.sub_counts.get(id(sub), 0) + 1
            sub.count += 1
            self.counter += 1
        return pack
