"""Scratch memory of CPU convolutions: measured against `tiny_backprop.scratch`'s estimate.

    python -m experiments.conv_scratch [--workloads unet_medium resnet_medium]

For every distinct convolution of each workload's trace (and whether its backward makes
the input's gradient), one call of its forward and one of its backward
(``aten.convolution_backward``) run on random tensors of its shapes; the scratch is the
resident high-water mark over the call (``VmHWM``, reset through /proc/self/clear_refs,
after ``malloc_trim(0)`` has handed free heap pages back to the kernel, so that the
call's allocations touch fresh pages), less the resident size before and the call's
outputs; the largest of 3 calls after a warm-up. Linux with glibc only. MiB; one torch
thread. Run it in a fresh process: oneDNN keeps some buffers between calls, so a
measurement can depend on the calls before it.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import sys
from collections.abc import Callable
from typing import Any

import torch
from torch.utils import _pytree as pytree

from experiments.pareto import _status

MIB = 2**20


def _kept(values: Any) -> int:
    seen = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes()
            for t in pytree.tree_leaves(values) if isinstance(t, torch.Tensor)}
    return sum(seen.values())


def peak_bytes(fn: Callable[[], Any], runs: int = 3) -> int:
    """Bytes one call of `fn` touches beyond its outputs (the largest of `runs`)."""
    trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    trim.argtypes = [ctypes.c_size_t]
    fn()
    best = 0
    for _ in range(runs):
        trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        before = _status("VmRSS")
        out = fn()
        best = max(best, _status("VmHWM") - before - _kept(out))
        del out
    return best


def measure(sig: Any, grad_input: bool) -> tuple[int, int]:
    """(forward, backward) scratch bytes of one convolution signature."""
    with torch.no_grad():
        leaves = [torch.randn(v.shape, dtype=v.dtype) if hasattr(v, "shape") else v
                  for v in sig.leaves]
        args, kwargs = pytree.tree_unflatten(leaves, sig.spec)
        a = dict(zip((x.name for x in sig.op._schema.arguments), args), **kwargs)
        fwd = peak_bytes(lambda: sig.op(*args, **kwargs))
        grad = torch.randn_like(sig.op(*args, **kwargs))
        b = a["bias"]
        bwd = peak_bytes(lambda: torch.ops.aten.convolution_backward.default(
            grad, a["input"], a["weight"], None if b is None else list(b.shape), a["stride"],
            a["padding"], a["dilation"], a["transposed"], a["output_padding"], a["groups"],
            [grad_input, True, b is not None]))
    return fwd, bwd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["unet_medium", "resnet_medium"])
    a = ap.parse_args(argv)
    from tiny_backprop import zoo
    from tiny_backprop.scratch import SCRATCH_OPS, estimate_scratch
    from tiny_backprop.trace import trace_model

    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, one thread; MiB")
    print(f"{'workload':14s} {'op':>4s} {'in':>6s} {'out':>6s} | {'fwd meas':>8s} "
          f"{'est':>6s} | {'bwd meas':>8s} {'est':>6s}")
    for wl in a.workloads:
        name, profile = wl.rsplit("_", 1)
        w = zoo.build(name, profile)
        trace = trace_model(w.model.train(), w.args, w.kwargs)
        est = estimate_scratch(trace)
        seen: dict[tuple[int, bool], tuple[int, int]] = {}
        for op in trace.ops:
            if op.name not in SCRATCH_OPS:
                continue
            k = (op.sig, bool(op.grad_inputs))
            if k not in seen:
                seen[k] = measure(trace.signatures[op.sig], k[1])
            f, b = seen[k]
            ef, eb = est.get(op.index, (0, 0))
            x = trace.signatures[op.sig].leaves[0]
            xin = x.dtype.itemsize * int(torch.Size(x.shape).numel())
            print(f"{wl:14s} {op.index:4d} {xin / MIB:6.2f} {op.out_bytes / MIB:6.2f} | "
                  f"{f / MIB:8.2f} {ef / MIB:6.2f} | {b / MIB:8.2f} {eb / MIB:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
