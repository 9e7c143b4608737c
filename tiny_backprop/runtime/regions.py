"""Recompute regions on saved-tensor hooks (non-reentrant, nested).

The original forward of a region runs under a pack hook that keeps nothing: each saved
tensor becomes a handle (frame, index). The autograd graph itself is the normal one,
so gradients reach every output of the region (side outputs included), parameters
and inputs, and ``torch.autograd.grad`` / ``backward(inputs=...)`` / DDP work.

On the first unpack of a handle whose tensor is gone, the frame re-runs the region
from its held inputs with the RNG and autocast state of the original run, on
detached inputs, and matches saved tensors by pack order:

* a kept child stores what it saves (the frame hands it to autograd on unpack);
* a nested child region keeps only its inputs: it becomes a sub-frame owning its
  range of indices, recomputed in turn when backward reaches it.

BatchNorm-like running statistics touched during a recompute are restored afterwards,
so they are updated exactly once per step.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch.autograd.graph import saved_tensors_hooks

from .accounting import TrackedEnv, Tracker
from .program import KeepStep, RegionStep


class _Handle:
    """What autograd holds instead of a saved tensor inside a region."""

    __slots__ = ("frame", "index")

    def __init__(self, frame: RegionFrame, index: int) -> None:
        self.frame = frame
        self.index = index


def _unpack_handle(h: _Handle) -> torch.Tensor:
    h.frame.tracker.acct.unpack()
    return h.frame.unpack(h.index)


def _never_unpack(_: object) -> torch.Tensor:
    raise RuntimeError("tiny_backprop: a recomputation's own graph was used for backward")


def _autocast_state() -> list[tuple[str, bool, torch.dtype]]:
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    return [(d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d)) for d in devices]


class RegionFrame:
    """One execution of a region: its held inputs, RNG/autocast state and recomputed state.

    Args:
        step: the compiled region.
        env: values available before the region (its inputs are read from here).
        tracker: memory accountant bridge.
    """

    def __init__(self, step: RegionStep, env: dict[str, object], tracker: Tracker) -> None:
        self._start(step, tracker)
        for name in step.inputs:
            v = env[name]
            # a copy of a parameter/buffer (BatchNorm's num_batches_tracked written in
            # place) is model state, not activation memory: never counted
            state = isinstance(v, torch.Tensor) and (tracker.is_excluded(v) or (
                isinstance(env, TrackedEnv) and env.holds_state(v)))
            self.hold_input(name, v, mutated=name in step.mutated_inputs, state=state)
        self.snapshot()

    def _start(self, step: Any, tracker: Tracker) -> None:
        """Empty frame state (no inputs held yet); subclasses call this first."""
        self.step = step
        self.tracker = tracker
        self.count = 0  # saved tensors packed by the original run
        # name -> (detached tensor or value, requires_grad, version at hold, is model state)
        self.inputs: dict[str, tuple[object, bool, int, bool]] = {}
        self.keys: list[int] = []
        self.cuda_devices: list[int] = []
        self.storage: dict[int, tuple[torch.Tensor, int]] = {}
        self.subs: list[list] = []  # [start, end, RegionFrame, n_unpacked]

    def hold_input(self, name: str, v: object, *, mutated: bool = False,
                   state: bool = False) -> None:
        """Hold input `name` for recomputation (a tensor detached; counted unless state).

        Args:
            mutated: the region writes it in place: hold a copy.
            state: model state (a parameter/buffer or a copy of one): never counted.
        """
        if not isinstance(v, torch.Tensor):
            self.inputs[name] = (v, False, 0, False)
            return
        rg = v.requires_grad
        v = v.detach().clone() if mutated else v.detach()
        if v.is_cuda and v.get_device() not in self.cuda_devices:
            self.cuda_devices = sorted([*self.cuda_devices, v.get_device()])
        self.inputs[name] = (v, rg, v._version, state)
        self.keys.append(0 if state else self.tracker.hold(v))

    def snapshot(self) -> None:
        """Record the RNG (CPU and the inputs' CUDA devices) and autocast state now."""
        self.cpu_rng = torch.get_rng_state()
        self.cuda_rng = [torch.cuda.get_rng_state(d) for d in self.cuda_devices]
        self.autocast = _autocast_state()
        self.cache_enabled = torch.is_autocast_cache_enabled()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        """Stop holding inputs and recomputed tensors."""
        for key in self.keys:
            self.tracker.release(key)
        self.keys = []
        self.inputs = {}
        self._drop_recomputed()

    def _drop_recomputed(self) -> None:
        """Release the recomputed saved tensors and close the sub-regions."""
        for _, key in self.storage.values():
            self.tracker.release(key)
        self.storage = {}
        for sub in self.subs:
            sub[2].close()
        self.subs = []

    # -- original forward -------------------------------------------------------

    def _pack_drop(self, t: torch.Tensor) -> _Handle:
        h = _Handle(self, self.count)
        self.count += 1
        return h

    def run_forward(self, env: dict[str, object]) -> None:
        """Run the region's forward once, keeping no saved tensors."""
        with saved_tensors_hooks(self._pack_drop, _unpack_handle):
            self.step.unit(env)

    # -- backward ---------------------------------------------------------------

    def _find_sub(self, index: int) -> list | None:
        for sub in self.subs:
            if sub[0] <= index < sub[1]:
                return sub
        return None

    def unpack(self, index: int) -> torch.Tensor:
        """The saved tensor number `index` of this region, recomputing if needed."""
        sub = self._find_sub(index)
        if sub is None and index not in self.storage:
            self.recompute()
            sub = self._find_sub(index)
        if sub is not None:
            value = sub[2].unpack(index - sub[0])
            sub[3] += 1
            if sub[3] >= sub[1] - sub[0]:  # every saved tensor of the sub-region handed out
                self.subs.remove(sub)
                sub[2].close()
            return value
        if index not in self.storage:
            raise RuntimeError(
                f"tiny_backprop: saved tensor {index} of the region over stages "
                f"{self.step.first}..{self.step.last} was not re-created by recomputation")
        t, key = self.storage.pop(index)
        self.tracker.release(key)
        return t

    @contextmanager
    def _replay(self) -> Iterator[None]:
        """RNG, autocast and grad mode of the original run; running stats restored after."""
        saved = [(b, b.detach().clone()) for m in self.step.norm_modules
                 for b in m.buffers(recurse=False)]
        saved += [(v, v.detach().clone()) for name in self.step.stat_inputs
                  if isinstance(v := self.inputs[name][0], torch.Tensor)]
        with ExitStack() as stack:
            stack.enter_context(torch.random.fork_rng(devices=self.cuda_devices))
            torch.set_rng_state(self.cpu_rng)
            for d, s in zip(self.cuda_devices, self.cuda_rng):
                torch.cuda.set_rng_state(s, d)
            stack.enter_context(torch.enable_grad())
            for dev, enabled, dtype in self.autocast:
                stack.enter_context(torch.autocast(dev, dtype=dtype, enabled=enabled,
                                                   cache_enabled=self.cache_enabled))
            try:
                yield
            finally:
                with torch.no_grad():
                    for b, v in saved:
                        b.copy_(v)

    def _input_env(self) -> TrackedEnv:
        env = TrackedEnv(self.tracker)
        for name, (v, rg, version, state) in self.inputs.items():
            if isinstance(v, torch.Tensor):
                if v._version != version and not state:  # model state is updated legitimately
                    raise RuntimeError(
                        f"tiny_backprop: input {name!r} of the region over stages "
                        f"{self.step.first}..{self.step.last} was modified in place after "
                        "the region ran; it cannot be recomputed")
                v = v.detach()
                if rg:
                    v.requires_grad_(True)
                if name in self.step.mutated_inputs:  # a fresh non-leaf copy to write to
                    v = v.clone()
            if state:
                env.put_untracked(name, v)
            else:
                env[name] = v
        return env

    def recompute(self) -> None:
        """Re-run the region from its held inputs (children applied again)."""
        t0 = time.perf_counter()
        self._drop_recomputed()
        rec = Recorder(self)
        with self._replay():
            self._rerun(rec)
        if rec.counter != self.count:
            raise RuntimeError(
                f"tiny_backprop: recomputing the region over stages {self.step.first}.."
                f"{self.step.last} saved {rec.counter} tensors, its forward saved {self.count}")
        self.tracker.recompute(rec.stored_bytes, time.perf_counter() - t0)

    def _rerun(self, rec: Recorder) -> None:
        """Run the children again under `rec`'s hooks (inside the replayed state)."""
        env = TrackedEnv(self.tracker)
        try:
            env = self._input_env()  # under enable_grad: copies must track grad
            for child in self.step.children:
                if isinstance(child, KeepStep):
                    with saved_tensors_hooks(rec.store, _never_unpack):
                        child.unit(env)
                else:
                    start = rec.counter
                    sub = RegionFrame(child, env, self.tracker)
                    with saved_tensors_hooks(rec.skip, _never_unpack):
                        child.unit(env)
                    rec.add_sub(start, sub)
                env.drop(child.drop_after)
        finally:
            env.clear_all()


class Recorder:
    """Saved-tensor hooks of one recomputation: numbers saved tensors in pack order.

    ``store`` keeps (and counts) a kept child's saved tensor under its number; ``skip``
    only advances the number (a nested region's tensors, recomputed later by its own
    frame, registered with ``add_sub``).

    The hooks live as long as the recomputation's own graph, which a side effect of a
    recomputed module (a list of router logits) may keep: so the frame is referenced
    weakly, and such a graph never keeps a frame's held tensors alive.
    """

    def __init__(self, frame: RegionFrame) -> None:
        self._frame = weakref.ref(frame)
        self.counter = 0
        self.stored_bytes = 0

    @property
    def frame(self) -> RegionFrame:
        frame = self._frame()
        if frame is None:
            raise RuntimeError("tiny_backprop: a recomputation outlived its region")
        return frame

    def store(self, t: torch.Tensor) -> None:
        frame = self.frame
        d = t.detach()
        key = frame.tracker.hold(d)
        if key:
            self.stored_bytes += d.untyped_storage().nbytes()
        frame.storage[self.counter] = (d, key)
        self.counter += 1

    def skip(self, t: torch.Tensor) -> None:
        self.counter += 1

    def add_sub(self, start: int, sub: RegionFrame) -> None:
        """`sub` packed the tensors numbered start..counter-1 (skipped here)."""
        sub.count = self.counter - start
        self.frame.subs.append([start, self.counter, sub, 0])
