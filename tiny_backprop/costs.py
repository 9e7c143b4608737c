"""Op costs measured on the device that trains: each distinct (op, shapes, dtype,
device) of a trace without a FLOP formula is timed once on real tensors of those shapes,
one op at a time (into the outputs of a warm-up call where the op has an ``.out``
overload, as in a warm training step); FLOP-counted ops (matmuls, convolutions) cost a fixed part plus their
FLOPs at a rate fitted through a few of them (the smallest to the upper quartile).

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

import torch
from torch.utils import _pytree as pytree

from .trace.types import OpSignature, TensorMeta, Trace

logger = logging.getLogger("tiny_backprop")

#: Timed repetitions per signature after one warm-up (the median is used).
REPEATS = 2
#: FLOP-counted signatures (matmuls, convolutions) timed to calibrate their cost: the
#: smallest, the median and the upper quartile by FLOPs; the others cost a fixed part
#: plus a FLOP rate fitted through the smallest and the largest of those (timing each
#: would take seconds on a CPU at real model sizes, and small matmuls run far below the
#: large ones' rate).
FLOP_SAMPLES = 3
#: Timings per op name (its smallest and its largest signature): further signatures of
#: a name cost a per-call part plus their elements at a per-element rate fitted through
#: those two (a per-element rate from the smallest alone is mostly call overhead).
NAME_SAMPLES = 2
#: Most seconds spent timing one trace; the rest is costed from the rates measured.
TIME_BUDGET_S = 1.0


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


def _arguments(schema: torch._C.FunctionSchema) -> list[tuple[str, str]]:
    return [(a.name, str(a.type)) for a in schema.arguments if not a.is_out]


def _out_overload(op: object) -> tuple[object, list[str]] | None:
    """The out variant of an aten overload and its out-argument names, if it has one:
    the overload of the same packet whose other arguments are exactly `op`'s (the
    packet's ``.out`` belongs to one overload only: ``sum.out`` is ``sum.default``'s,
    ``sum.IntList_out`` is ``sum.dim_IntList``'s; a mismatched one resizes the outputs,
    with a warning from torch, and times something else)."""
    packet = getattr(op, "overloadpacket", None)
    schema = getattr(op, "_schema", None)
    if packet is None or schema is None:
        return None
    want = _arguments(schema)
    for name in packet.overloads():
        cand = getattr(packet, name)
        names = [a.name for a in cand._schema.arguments if a.is_out]
        if names and cand is not op and _arguments(cand._schema) == want:
            return cand, names
    return None


def _storages(values: object) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in pytree.tree_leaves(values)
            if isinstance(t, torch.Tensor)}


def time_signature(sig: OpSignature, repeats: int = REPEATS) -> float:
    """Median seconds of one call of `sig` on fresh real tensors (raises on failure).

    An op with an `.out` overload is timed writing into the outputs of its warm-up
    call: a fresh output's first touch (page faults on a CPU, hundreds of microseconds
    per MiB, more than a softmax's own work) is not what the op costs in a warm training
    step, where freed blocks are reused. Ops without one, and views, are timed as they
    are called."""
    device = next((v.device for v in sig.leaves if isinstance(v, TensorMeta)), "cpu")
    cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
    times = []
    # the user's RNG stream is untouched: inputs and random ops draw from a forked state
    with torch.no_grad(), torch.random.fork_rng(devices=cuda):
        leaves = [_make(v) if isinstance(v, TensorMeta) else v for v in sig.leaves]
        args, kwargs = pytree.tree_unflatten(leaves, sig.spec)
        first = sig.op(*args, **kwargs)  # warm-up
        outs = list(first) if isinstance(first, (tuple, list)) else [first]
        call = None
        found = _out_overload(sig.op)
        if (found is not None and len(found[1]) == len(outs)
                and all(isinstance(t, torch.Tensor) for t in outs)
                and not _storages(outs) & _storages(leaves)):
            out_op, names = found
            out_kwargs = dict(kwargs, **dict(zip(names, outs)))
            shapes = [t.shape for t in outs]
            ptrs = _storages(outs)
            try:
                # emptied first (their storage stays): an out variant may resize its
                # output (mse_loss.out writes the unreduced loss into it, then resizes
                # it back), which warns when it has elements; it is then timed as called
                for t in outs:
                    t.resize_(0)
                out_op(*args, **out_kwargs)
                if [t.shape for t in outs] == shapes and _storages(outs) == ptrs:
                    call = (out_op, out_kwargs)
            except Exception:  # an out variant that differs: time the op as called
                call = None
        if call is None:
            del first, outs
        for _ in range(repeats):
            if call is not None:  # each call starts from empty outputs, storage kept
                for t in outs:
                    t.resize_(0)
            _sync(device)
            t0 = time.perf_counter()
            if call is not None:
                call[0](*args, **call[1])
            else:
                out = sig.op(*args, **kwargs)
            _sync(device)
            times.append(time.perf_counter() - t0)
            if call is None:
                del out
    return statistics.median(times)


def measure(trace: Trace, cache: CostCache | None = None) -> list[float]:
    """Seconds per op of `trace` (index = op index).

    Signatures without a FLOP formula (elementwise, softmax, norms, dropout: where FLOPs
    mislead) are timed once each: per op name its smallest and its largest (every
    name's smallest first), within `TIME_BUDGET_S` seconds in all; the others cost a
    per-call part plus their elements at a per-element rate fitted through their name's
    two timings, except ops that write no memory (views): those cost their name's median
    timed call at any size. Of the FLOP-counted ones, the smallest, the median and the
    upper quartile by FLOPs are timed, and the others cost a fixed part plus FLOPs at
    the rate fitted through the smallest and the largest of those. (Before, the rates
    came from the smallest signatures alone, mostly call overhead, and each op wrote a
    fresh output, page faults included: `python -m experiments.cost_sum`, 3 runs, CPU,
    2026-12-02: an HF Llama block's ops summed to 47-53 ms against 23-24 ms timed whole;
    with the fit 28-37 ms against 23-26 ms; timed into warm outputs 21-22 ms against
    23-26 ms.)
    """
    cache = cache if cache is not None else CostCache()
    flops_of: dict[int, int] = {}
    elements: dict[int, int] = {}
    names: dict[int, str] = {}
    writes: set[int] = set()  # signatures that write memory (not views / metadata only)
    for op in trace.ops:
        if op.sig >= 0 and (op.out_bytes > 0 or op.self_write_bytes > 0):
            writes.add(op.sig)
        if op.sig < 0:
            continue
        names[op.sig] = op.name
        elements[op.sig] = op.elements
        if op.flops:
            flops_of[op.sig] = op.flops
    by_flops = sorted(flops_of, key=lambda i: flops_of[i])
    # the smallest, the median and the upper quartile (not the largest: an LM head's
    # matmul can take seconds on a CPU and hold a logits-sized output)
    n_f = len(by_flops)
    flop_samples = sorted({by_flops[k] for k in (0, n_f // 2, (3 * n_f) // 4)} if by_flops
                          else set(), key=lambda i: flops_of[i])[:FLOP_SAMPLES]
    # per op name its smallest, then its largest signature: the smallest of all names
    # first (cheap), so a spent time budget still leaves every name one timing
    by_name: dict[str, list[int]] = {}
    for i in sorted((i for i in names if i not in flops_of), key=lambda i: (elements[i], i)):
        by_name.setdefault(names[i], []).append(i)
    smallest = sorted((v[0] for v in by_name.values()), key=lambda i: (elements[i], i))
    largest = sorted((v[-1] for v in by_name.values() if len(v) > 1),
                     key=lambda i: (elements[i], i))
    order = flop_samples + smallest + largest
    per_sig: dict[int, float] = {}
    samples: dict[str, int] = {}
    failed: list[str] = []
    spent = 0.0
    for i in order:
        sig = trace.signatures[i]
        key = repr(sig.key)
        if key in cache.seconds:
            per_sig[i] = cache.seconds[key]
            samples[names[i]] = samples.get(names[i], 0) + 1
            continue
        if spent > TIME_BUDGET_S or (i not in flops_of
                                     and samples.get(names[i], 0) >= NAME_SAMPLES):
            continue
        t0 = time.perf_counter()
        try:
            per_sig[i] = cache.seconds[key] = time_signature(sig)
            samples[names[i]] = samples.get(names[i], 0) + 1
        except Exception as exc:  # unsupported here, OOM, an argument we cannot rebuild
            failed.append(f"{sig.key[0]} ({type(exc).__name__})")
        spent += time.perf_counter() - t0
    timed = [i for i in by_flops if i in per_sig and per_sig[i] > 0]
    flop_fit = _fit([(flops_of[i], per_sig[i]) for i in timed]) if timed else (0.0, 1e-10)
    per_elem: dict[str, list[tuple[int, float]]] = {}
    per_call: dict[str, list[float]] = {}
    for i, sec in per_sig.items():
        if i in flops_of:
            continue
        if i not in writes:  # a view costs the same at any size
            per_call.setdefault(names[i], []).append(sec)
        elif elements.get(i):
            per_elem.setdefault(names[i], []).append((elements[i], sec))
    name_fit = {n: _fit(v) for n, v in per_elem.items()}
    name_call = {n: statistics.median(v) for n, v in per_call.items()}
    call = statistics.median([t for v in per_call.values() for t in v] or [0.0])
    elem = statistics.median([t / e for v in per_elem.values() for e, t in v] or [1e-9])
    if failed:
        logger.info("tiny_backprop: %d op signatures could not be timed, costed from FLOPs "
                    "instead: %s", len(failed), ", ".join(sorted(set(failed))[:8]))
    cache.save()
    out: list[float] = []
    for op in trace.ops:
        if op.sig in per_sig:
            out.append(per_sig[op.sig])
        elif op.flops:
            out.append(flop_fit[0] + flop_fit[1] * op.flops)
        elif op.out_bytes <= 0 and op.self_write_bytes <= 0:
            out.append(name_call.get(op.name, call))
        elif op.name in name_fit:
            a, b = name_fit[op.name]
            out.append(a + b * op.elements)
        else:
            out.append(elem * op.elements)
    return out


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(fixed seconds, seconds per unit) of a line through the smallest and the largest
    of (size, seconds) points, both >= 0; one size: no fixed part (seconds)."""
    lo = min(points)
    hi = max(points)
    if hi[0] <= lo[0]:
        return 0.0, max(t for _, t in points) / max(1, hi[0])
    slope = max(0.0, (hi[1] - lo[1]) / (hi[0] - lo[0]))
    fixed = max(0.0, lo[1] - slope * lo[0])
    if slope == 0.0:  # the larger ran faster (noise): its rate, no fixed part
        slope = hi[1] / hi[0]
        fixed = 0.0
    return fixed, slope


__all__ = ["FLOP_SAMPLES", "NAME_SAMPLES", "REPEATS", "TIME_BUDGET_S", "CostCache", "measure",
           "time_signature"]
