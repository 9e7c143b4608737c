"""Bookkeeping of held activation bytes through the C accountant.

Every tensor the runtime holds (a saved tensor outside regions, a region's held input, a
kept op output, a recomputed saved tensor) is registered by its storage
(``untyped_storage().data_ptr()``, size in bytes); storages shared by several holders
count once. Parameters and buffers are not activations and are never counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._C import Accountant


@dataclass(frozen=True)
class StepStats:
    """Memory and recompute facts of the last training step.

    Attributes:
        measured_peak_bytes: peak of held activation bytes (saved tensors, held region
            inputs, kept op outputs), measured by the accountant; None when the step was
            not counted (``track_memory=False``).
        predicted_peak_bytes: the plan's predicted peak of the same held bytes
            (`ModelPlan.predicted_held_bytes`: the backward's gradients in flight left
            out), or None without a plan.
        recompute_bytes: bytes of saved tensors re-created by recomputation.
        recompute_seconds: wall time spent recomputing (seconds).
        n_recomputes: number of region recomputations.
        n_packs: saved tensors packed inside regions, plus (when tracking) outside them.
        n_unpacks: saved-tensor unpacks of those.
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
    """A saved tensor outside regions (detached: no reference cycle through autograd)."""

    __slots__ = ("tensor", "key", "tracker")

    def __init__(self, tensor: torch.Tensor, key: int, tracker: Tracker) -> None:
        self.tensor = tensor
        self.key = key
        self.tracker = tracker

    def __del__(self) -> None:
        self.tracker.release(self.key)
        if self.key:
            self.tracker.event("backward")


class Tracker:
    """Connects the runtime's holds and frees to one C Accountant.

    Args:
        counting: count held bytes (``track_memory=True``); when False, holds are free
            no-ops and only packs, unpacks and recomputations are counted.
    """

    def __init__(self, counting: bool = True) -> None:
        self.acct = Accountant()
        self.counting = counting
        self.excluded: set[int] = set()  # storage ids of parameters and buffers
        self.n_packs = 0
        self.n_unpacks = 0
        self.events: list[tuple[str, str, int]] = []  # (kind, region, held bytes) if counting

    def event(self, kind: str, region: str = "") -> None:
        """Record a timeline event with the bytes held now (only while counting)."""
        if self.counting:
            self.events.append((kind, region, self.acct.live_bytes))

    def exclude(self, tensors: list[torch.Tensor]) -> None:
        """Never count these tensors' storages (parameters, buffers)."""
        self.excluded = {storage_key(t)[0] for t in tensors if isinstance(t, torch.Tensor)}

    def is_excluded(self, t: torch.Tensor) -> bool:
        """True for a parameter's or buffer's storage (never activation memory)."""
        return storage_key(t)[0] in self.excluded

    def hold(self, value: object) -> int:
        """Count one hold of `value` if it is an activation tensor; returns its key or 0."""
        if not self.counting or not isinstance(value, torch.Tensor) or value.is_meta:
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

    def count_pack(self) -> None:
        self.n_packs += 1

    def count_unpack(self) -> None:
        self.n_unpacks += 1

    def pack(self, t: torch.Tensor) -> object:
        """Saved-tensor pack hook outside regions: keep the tensor detached, count it."""
        self.n_packs += 1
        d = t.detach()
        saved = _Saved(d, self.hold(d), self)
        self.event("pack")
        return saved

    def unpack(self, packed: _Saved) -> torch.Tensor:
        """Saved-tensor unpack hook matching `pack`."""
        self.n_unpacks += 1
        return packed.tensor

    def recompute(self, nbytes: int, seconds: float) -> None:
        """Record one recomputation of `nbytes` bytes taking `seconds` seconds."""
        self.acct.recompute(nbytes, seconds)

    def start_step(self) -> None:
        """Begin measuring a new step (peak restarts from the bytes held now)."""
        self.acct.reset_peak()
        self.n_packs = 0
        self.n_unpacks = 0
        self.events = []
        self.event("forward_start")

    def stats(self, predicted: int | None) -> StepStats:
        """Figures of the step measured since `start_step`."""
        a = self.acct
        return StepStats(a.peak_bytes if self.counting else None, predicted,
                         a.recompute_bytes, a.recompute_seconds, a.n_recompute,
                         self.n_packs, self.n_unpacks)
