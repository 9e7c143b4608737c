"""Measured op costs of one HF Llama block against the block timed whole.

    python -m experiments.cost_sum

Traces the pareto sweep's HF Llama (6 layers, d 256, seq 256, batch 4), costs its ops
with `tiny_backprop.costs.measure` and prints, for the second block, the sum of its ops'
measured forward costs and the largest terms per op name beside each name's self time in
`torch.profiler` over 5 real forwards of the block (no grad, per forward), then the
block's own forward timed whole (no grad, median of 5 after 2 warm-ups). Milliseconds;
one torch thread.
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
    layer = model.model.layers[1]
    h = torch.randn(4, 256, 256)
    pos = model.model.rotary_emb(h, torch.arange(256)[None])
    with torch.no_grad():
        for _ in range(2):
            layer(h, position_embeddings=pos)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                layer(h, position_embeddings=pos)
    profiled: dict[str, float] = collections.defaultdict(float)
    for event in prof.key_averages():
        profiled[event.key] += event.self_cpu_time_total / 5 / 1e3  # us over 5 -> ms
    print(f"block 1, sum of measured op costs: {sum(per_name.values()) * 1e3:.1f} ms")
    print(f"  {'op':24s} {'measured':>9s} {'profiler self':>14s}")
    for name, sec in sorted(per_name.items(), key=lambda kv: -kv[1])[:8]:
        real = profiled.get("aten::" + name.split(".")[1], float("nan"))
        print(f"  {name:24s} {sec * 1e3:6.2f} ms {real:11.2f} ms")
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
