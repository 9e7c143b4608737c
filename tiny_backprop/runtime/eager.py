"""Apply a `RuntimePlan` around the model's own forward.

While a training forward (or a recomputation) runs, the ``forward`` of every module the
plan names is replaced by a dispatcher; each call is counted per module within the
current scope (the whole forward, or the region being recomputed) and, when it is the
call a region starts at or continues with, runs inside that region's frame. Everything
else is the user's code, run as written: a stale plan can cost memory or time, never
correctness.

Scopes live per thread, so another thread calling the model meanwhile runs it plainly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.autograd.graph import saved_tensors_hooks

from .accounting import Tracker
from .frames import Frame, Recorder, _never_unpack, _unpack_handle
from .spec import CallRef, RegionSpec, RuntimePlan

Hooks = tuple[Callable[..., Any], Callable[..., Any]]


@dataclass
class _Scope:
    """Call counting and open regions of one forward or one recomputation."""

    regions: tuple[RegionSpec, ...]
    hooks_for: Callable[[Frame], Hooks]
    top: bool = False
    starts: dict[CallRef, RegionSpec] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    open: Frame | None = None
    inside: int = 0
    opened: list[tuple[RegionSpec, int, bool]] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    interrupted: bool = False

    def __post_init__(self) -> None:
        self.starts = {s.calls[0]: s for s in self.regions}


@dataclass(frozen=True)
class RunReport:
    """What one forward under the plan saw (for the staleness check).

    Attributes:
        stale: the calls or saved-tensor counts differed from the trace's.
        reason: why (empty when not stale).
    """

    stale: bool
    reason: str = ""


class EagerRuntime:
    """Runs ``model(*args, **kwargs)`` with the regions of `plan` around module calls.

    Args:
        model: the user's model (called as is).
        plan: the regions to apply.
        tracker: memory accountant bridge.
    """

    def __init__(self, model: nn.Module, plan: RuntimePlan, tracker: Tracker) -> None:
        self.model = model
        self.plan = plan
        self.tracker = tracker
        self._modules = {p: (model if p == "" else model.get_submodule(p)) for p in plan.paths()}
        self._originals: dict[str, Callable[..., Any]] = {}
        self._local = threading.local()
        self._lock = threading.Lock()
        self._depth = 0
        self._had: dict[str, Any] = {}

    def module(self, path: str) -> nn.Module:
        """The module a plan path names."""
        return self._modules[path]

    # -- patching -----------------------------------------------------------------

    @contextmanager
    def patched(self) -> Iterator[None]:
        """The named modules' forwards dispatch through the runtime while inside."""
        with self._lock:
            if self._depth == 0:
                for path, m in self._modules.items():
                    self._had[path] = m.__dict__.get("forward")
                    self._originals[path] = m.forward
                    m.forward = self._dispatcher(path)  # type: ignore[method-assign]
            self._depth += 1
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    for path, m in self._modules.items():
                        old = self._had.pop(path, None)
                        if old is None:
                            m.__dict__.pop("forward", None)
                        else:
                            m.forward = old  # type: ignore[method-assign]
                    self._originals = {}

    def _dispatcher(self, path: str) -> Callable[..., Any]:
        def forward(*args: Any, **kwargs: Any) -> Any:
            return self.call(path, args, kwargs)
        return forward

    # -- scopes -------------------------------------------------------------------

    def _stack(self) -> list[_Scope]:
        st = getattr(self._local, "stack", None)
        if st is None:
            st = self._local.stack = []
        return st

    @contextmanager
    def _push(self, scope: _Scope) -> Iterator[None]:
        st = self._stack()
        st.append(scope)
        try:
            yield
        finally:
            st.pop()

    @contextmanager
    def recompute_scope(self, frame: Frame, rec: Recorder) -> Iterator[None]:
        """Scope of `frame`'s recomputation: its children open as sub-frames."""
        scope = _Scope(frame.spec.children, lambda sub: (rec.sub_pack(sub), _never_unpack))
        with self.patched(), self._push(scope):
            yield

    # -- calls ----------------------------------------------------------------------

    def call(self, path: str, args: tuple, kwargs: dict) -> Any:
        """Call module `path`'s forward, inside a region when the plan says so."""
        orig = self._originals[path]
        st = self._stack()
        if not st:
            return orig(*args, **kwargs)
        scope = st[-1]
        occ = scope.counts.get(path, 0)
        scope.counts[path] = occ + 1
        if scope.inside:
            return orig(*args, **kwargs)
        ref = CallRef(path, occ)
        frame = scope.open
        if frame is not None and frame.spec.calls[frame.position] != ref:
            scope.open, frame, scope.interrupted = None, None, True
        if frame is None:
            spec = scope.starts.get(ref)
            if spec is None:
                return orig(*args, **kwargs)
            frame = Frame(spec, self)
            scope.open = frame
            if scope.top:
                scope.frames.append(frame)
        frame.add_call(path, args, kwargs)
        pack, unpack = scope.hooks_for(frame)
        scope.inside += 1
        label = frame.spec.label()
        self.tracker.event("region_forward", label)
        try:
            with frame.original(pack, unpack):
                out = orig(*args, **kwargs)
        finally:
            scope.inside -= 1
            self.tracker.event("region_forward", label)
        frame.after_call(out)
        if frame.complete:
            scope.open = None
        return out

    def run(self, args: tuple, kwargs: dict, track: bool) -> tuple[Any, RunReport]:
        """``model(*args, **kwargs)`` under the plan; `track`: count saved tensors outside
        regions too."""
        scope = _Scope(self.plan.regions, lambda f: (f.pack_drop, _unpack_handle), top=True)
        with self.patched(), self._push(scope):
            if track:
                with saved_tensors_hooks(self.tracker.pack, self.tracker.unpack):
                    out = self.model(*args, **kwargs)
            else:
                out = self.model(*args, **kwargs)
        report = self._report(scope)
        scope.frames.clear()
        return out, report

    def _report(self, scope: _Scope) -> RunReport:
        seen = {f.spec.calls[0]: f for f in scope.frames}
        for spec in self.plan.regions:
            f = seen.get(spec.calls[0])
            if f is None:
                return RunReport(True, f"region {spec.label()} did not run")
            if not f.complete or scope.interrupted:
                return RunReport(True, f"region {spec.label()} ran {len(f.calls)} of its "
                                       f"{len(spec.calls)} calls")
            if spec.expected_packs is not None and f.count != spec.expected_packs:
                return RunReport(True, f"region {spec.label()} saved {f.count} tensors, the "
                                       f"trace saw {spec.expected_packs}")
        return RunReport(False)
