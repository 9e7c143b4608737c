"""Scratch memory of ops: bytes an op allocates and frees again within one call, beyond
its outputs, that no trace sees. On a CPU a convolution works on oneDNN's copies of its
input, output and weights in a blocked layout; those copies are allocated outside
torch's allocator.

`estimate_scratch` estimates them from the sizes of the convolution's tensors, so that
the same trace always plans the same. `python -m experiments.conv_scratch` measures
them (the resident high-water mark of one call) and compares.
"""

from __future__ import annotations

import math

from torch.utils import _pytree as pytree

from .trace.types import TensorMeta, Trace

#: Ops with scratch memory.
SCRATCH_OPS = frozenset({"aten.convolution"})


def estimate_scratch(trace: Trace) -> dict[int, tuple[int, int]]:
    """Op index -> (forward, backward) scratch bytes of the CPU convolutions of `trace`,
    estimated from their sizes (deterministic: the same trace always plans the same):
    forward max(input, output) + weight; backward input (twice with a stride above 1)
    + output + weight, without the input when it needs no gradient: oneDNN's copies of
    them in its blocked layout (measured against this: `python -m
    experiments.conv_scratch`). Other devices: none (a cuDNN workspace is not
    estimated)."""
    out: dict[int, tuple[int, int]] = {}
    for op in trace.ops:
        if op.name not in SCRATCH_OPS or op.sig < 0:
            continue
        sig = trace.signatures[op.sig]
        args, _ = pytree.tree_unflatten(list(sig.leaves), sig.spec)
        if (len(args) < 4 or not isinstance(args[0], TensorMeta)
                or not isinstance(args[1], TensorMeta) or args[0].device != "cpu"):
            continue
        x, w = _meta_bytes(args[0]), _meta_bytes(args[1])
        y = op.out_bytes
        strided = any(int(s) > 1 for s in args[3]) if isinstance(args[3], (list, tuple)) else False
        fwd = max(x, y) + w
        bwd = ((2 if strided else 1) * x if op.grad_inputs else 0) + y + w
        out[op.index] = (fwd, bwd)
    return out


def _meta_bytes(meta: TensorMeta) -> int:
    return math.prod(int(d) for d in meta.shape) * meta.dtype.itemsize


__all__ = ["SCRATCH_OPS", "estimate_scratch"]
