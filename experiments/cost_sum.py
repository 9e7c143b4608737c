"""Measured op costs of one HF Llama block against the block timed whole.

    python -m experiments.cost_sum

Traces the pareto sweep's HF Llama (6 layers, d 256, seq 256, batch 4), costs its ops
with `tiny_backprop.costs.measure` and prints, for the second block, the sum of its ops'
measured forward costs and the largest terms per op name, then the block's own forward
timed whole (no grad, median of 5 after 2 warm-ups). Seconds; one torch thread.
"""

from __future__ import annotations

import collections
import statistics
import sys
import time

import torch


def main() -> int:
    from experiments.pareto import build
    from tiny_backprop.blocks import block_chain
    from tiny_backprop.costs import measure
    from tiny_backprop.trace import trace_model

    torch.set_num_threads(1)
    model, _, _ = build("hf_llama")
    ids = torch.randint(0, 4000, (4, 256), generator=torch.Generator().manual_seed(1))
    trace = trace_model(model, (), {"input_ids": ids, "labels": ids})
    costs = measure(trace)
    block = block_chain(model, trace).calls[1]
    per_name: dict[str, float] = collections.defaultdict(float)
    for op in trace.ops[block.first_op:block.end_op]:
        per_name[op.name] += costs[op.index]
    print(f"block 1, sum of measured op costs: {sum(per_name.values()) * 1e3:.1f} ms")
    for name, sec in sorted(per_name.items(), key=lambda kv: -kv[1])[:8]:
        print(f"  {name:24s} {sec * 1e3:7.2f} ms")
    layer = model.model.layers[1]
    h = torch.randn(4, 256, 256)
    pos = model.model.rotary_emb(h, torch.arange(256)[None])
    times = []
    with torch.no_grad():
        for i in range(7):
            t0 = time.perf_counter()
            layer(h, position_embeddings=pos)
            if i >= 2:
                times.append(time.perf_counter() - t0)
    print(f"block 1 timed whole (no grad): {statistics.median(times) * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
