"""Bookkeeping of held activation bytes through the C accountant.

Every tensor the runtime holds (a saved tensor of a kept stage, a boundary value in
the interpreter's environment, a region's held input, a recomputed saved tensor) is
registered by its storage (``untyped_storage().data_ptr()``, size in bytes); storages
shared by several holders count once. Parameters and buffers are not activations and
are never counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._C import Accountant


@dataclass(frozen=True)
class StepStats:
    """Memory and recompute facts of the last training step.

    Attributes:
        measured_peak_bytes: peak of held activation bytes (saved tensors and held
            boundary values), measured by the accountant; None when the step was not
            counted (a plan with no recompute run as the plain forward).
        predicted_peak_bytes: the plan's predicted peak (bytes), or None without a plan.
        recompute_bytes: bytes of saved tensors re-created by recomputation.
        recompute_seconds: wall time spent recomputing (seconds).
        n_recomputes: number of region recomputations.
        n_packs: saved-tensor pack and hold events.
        n_unpacks: saved-tensor unpack events.
    """

    measured_peak_bytes: int | None
    predicted_peak_bytes: int | None
    recompute_bytes: int
    recompute_seconds: float
    n_recomputes: int
    n_packs: int
    n_unpacks: int


def storage_key(t: torch.Tensor) -> tuple[int, int]:
    """(storage id, storage bytes) of a tensor; id 0 for tensors without memory."""
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


class _Saved:
    """A saved tensor of a kept stage; its storage stays counted while autograd holds it."""

    __slots__ = ("tensor", "key", "tracker")

    def __init__(self, tensor: torch.Tensor, key: int, tracker: Tracker) -> None:
        self.tensor = tensor
        self.key = key
        self.tracker = tracker

    def __del__(self) -> None:
        self.tracker.release(self.key)


class Tracker:
    """Connects the runtime's holds and frees to one C Accountant."""

    def __init__(self) -> None:
        self.acct = Accountant()
        self.excluded: set[int] = set()  # storage ids of parameters and buffers

    def exclude(self, tensors: list[torch.Tensor]) -> None:
        """Never count these tensors' storages (parameters, buffers)."""
        self.excluded = {storage_key(t)[0] for t in tensors if isinstance(t, torch.Tensor)}

    def is_excluded(self, t: torch.Tensor) -> bool:
        """True for a parameter's or buffer's storage (never activation memory)."""
        return storage_key(t)[0] in self.excluded

    def hold(self, value: object) -> int:
        """Count one hold of `value` if it is an activation tensor; returns its key or 0."""
        if not isinstance(value, torch.Tensor) or value.is_meta:
            return 0
        key, nbytes = storage_key(value)
        if key == 0 or key in self.excluded:
            return 0
        self.acct.hold(key, nbytes)
        return key

    def release(self, key: int) -> None:
        """End one hold returned by `hold` (0 is ignored)."""
        if key:
            self.acct.release(key)

    def pack(self, t: torch.Tensor) -> object:
        """Saved-tensor pack hook of kept stages: keep the tensor, count its storage."""
        key = self.hold(t)
        return _Saved(t, key, self) if key else t

    def unpack(self, packed: object) -> torch.Tensor:
        """Saved-tensor unpack hook matching `pack`."""
        self.acct.unpack()
        return packed.tensor if isinstance(packed, _Saved) else packed  # type: ignore[return-value]

    def recompute(self, nbytes: int, seconds: float) -> None:
        """Record one recomputation of `nbytes` bytes taking `seconds` seconds."""
        self.acct.recompute(nbytes, seconds)

    def start_step(self) -> None:
        """Begin measuring a new step (peak restarts from the bytes held now)."""
        self.acct.reset_peak()

    def stats(self, predicted: int | None) -> StepStats:
        """Figures of the step measured since `start_step`."""
        a = self.acct
        return StepStats(a.peak_bytes, predicted, a.recompute_bytes, a.recompute_seconds,
                         a.n_recompute, a.n_hold, a.n_unpack)


class UntrackedView(Tracker):
    """A Tracker that counts no holds (HCModule(track_memory=False)).

    It shares `base`'s accountant, so recomputations and unpacks are still counted
    (``n_recomputes``, ``recompute_seconds``), and `base`'s parameter/buffer exclusions,
    so model state is still recognised; holds and releases are free no-ops.
    """

    def __init__(self, base: Tracker) -> None:  # no super().__init__: no accountant of its own
        self.acct = base.acct
        self.base = base

    @property
    def excluded(self) -> set[int]:  # type: ignore[override]
        return self.base.excluded

    def exclude(self, tensors: list[torch.Tensor]) -> None:
        self.base.exclude(tensors)

    def hold(self, value: object) -> int:
        return 0

    def release(self, key: int) -> None:
        return None


class TrackedEnv(dict):
    """The interpreter's value environment: every held activation is counted."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.tracker = tracker
        self.keys_of: dict[str, int] = {}
        self.state_storages: set[int] = set()  # storages of untracked values

    def __setitem__(self, name: str, value: object) -> None:
        old = self.keys_of.pop(name, 0)
        super().__setitem__(name, value)
        # a value in an untracked value's storage (an in-place update of a buffer copy)
        # is model state too
        state = isinstance(value, torch.Tensor) and self.holds_state(value)
        self.keys_of[name] = 0 if state else self.tracker.hold(value)
        self.tracker.release(old)

    def holds_state(self, value: torch.Tensor) -> bool:
        """True when `value` lives in the storage of a value stored untracked."""
        return storage_key(value)[0] in self.state_storages

    def put_untracked(self, name: str, value: object) -> None:
        """Store a value that is never activation memory (a parameter, a buffer)."""
        dict.__setitem__(self, name, value)
        if isinstance(value, torch.Tensor):
            self.state_storages.add(storage_key(value)[0])

    def drop(self, names: list[str]) -> None:
        """Forget values no longer needed."""
        for n in names:
            if n in self:
                super().pop(n)
                self.tracker.release(self.keys_of.pop(n, 0))

    def clear_all(self) -> None:
        """Forget every value."""
        for key in self.keys_of.values():
            self.tracker.release(key)
        self.keys_of.clear()
        super().clear()
