"""Op costs measured on the device that trains: each distinct (op, shapes, dtype,
device) of a trace is timed once on real tensors of those shapes, one op at a time.

Memory is at most one op's inputs and outputs. Floating inputs are random, integer and
bool inputs zero (valid indices and targets). An op that cannot be timed (unsupported
there, out of memory, an argument that cannot be rebuilt) gets its FLOP cost converted
to seconds at the rate the timed FLOP-counted ops ran (logged once). Results are cached
per signature in a `CostCache` (optionally on disk, JSON).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree

from .trace.types import OpSignature, TensorMeta, Trace

logger = logging.getLogger("tiny_backprop")

#: Timed repetitions per signature after one warm-up (the median is used).
REPEATS = 3


class CostCache:
    """Seconds per op signature; `path` (JSON) persists them across processes."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.seconds: dict[str, float] = {}
        if self.path is not None and self.path.exists():
            try:
                self.seconds = {str(k): float(v) for k, v in
                                json.loads(self.path.read_text()).items()}
            except (OSError, ValueError):
                logger.warning("tiny_backprop: ignoring unreadable cost cache %s", self.path)

    def save(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_text(json.dumps(self.seconds, sort_keys=True))


def _make(meta: TensorMeta) -> torch.Tensor:
    dev = torch.device(meta.device)
    if meta.dtype.is_floating_point or meta.dtype.is_complex:
        return torch.randn(meta.shape, dtype=meta.dtype, device=dev)
    return torch.zeros(meta.shape, dtype=meta.dtype, device=dev)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_signature(sig: OpSignature, repeats: int = REPEATS) -> float:
    """Median seconds of one call of `sig` on fresh real tensors (raises on failure)."""
    device = next((v.device for v in sig.leaves if isinstance(v, TensorMeta)), "cpu")
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    times = []
    # the user's RNG stream is untouched: inputs and random ops draw from a forked state
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        leaves = [_make(v) if isinstance(v, TensorMeta) else v for v in sig.leaves]
        args, kwargs = pytree.tree_unflatten(leaves, sig.spec)
        for i in range(repeats + 1):
            _sync(device)
            t0 = time.perf_counter()
            out = sig.op(*args, **kwargs)
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
            del out
    return statistics.median(times)


def measure(trace: Trace, cache: CostCache | None = None) -> list[float]:
    """Seconds per op of `trace` (index = op index), timing each signature once."""
    cache = cache if cache is not None else CostCache()
    per_sig: dict[int, float] = {}
    failed: list[str] = []
    for i, sig in enumerate(trace.signatures):
        key = repr(sig.key)
        if key in cache.seconds:
            per_sig[i] = cache.seconds[key]
            continue
        try:
            per_sig[i] = cache.seconds[key] = time_signature(sig)
        except Exception as exc:  # unsupported here, OOM, an argument we cannot rebuild
            failed.append(f"{sig.key[0]} ({type(exc).__name__})")
    # FLOP rate of the timed FLOP-counted ops, for ops we could not time
    flops = sum(op.flops for op in trace.ops if op.flops and op.sig in per_sig)
    secs = sum(per_sig[op.sig] for op in trace.ops if op.flops and op.sig in per_sig)
    rate = flops / secs if secs > 0 else 1e10
    elem = statistics.median([per_sig[op.sig] / op.elements for op in trace.ops
                              if not op.flops and op.elements and op.sig in per_sig] or [1e-9])
    if failed:
        logger.info("tiny_backprop: %d op signatures could not be timed, costed from FLOPs "
                    "instead: %s", len(failed), ", ".join(sorted(set(failed))[:8]))
    cache.save()
    out = []
    for op in trace.ops:
        if op.sig in per_sig:
            out.append(per_sig[op.sig])
        else:
            out.append(op.flops / rate if op.flops else elem * op.elements)
    return out


def _fmt(sig: OpSignature) -> str:  # pragma: no cover - debugging aid
    return f"{sig.key[0]}{[v.shape if isinstance(v, TensorMeta) else v for v in sig.leaves]}"


__all__ = ["REPEATS", "CostCache", "measure", "time_signature"]
_ = Any
