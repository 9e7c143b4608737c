"""Trace + plan time of HCModule's first step on Hugging Face GPT-2 at its real size.

    python -m benchmarks.plan_time_hf [--layers 12] [--d 768] [--seq 512] [--batch 4]
                                      [--repeats 3] [--budget 0.5] [--cost-model flops]
                                      [--json]

Random init from a config (no download). Times ``plan_model`` (fake-tensor trace of one
training forward + the C planner) `repeats` times in one process; the first repeat
includes importing torch's fake-tensor stack (and, with ``--cost-model measured``, timing
every distinct op once; later repeats plan anew but time nothing). Prints each repeat's trace and plan time
(seconds), the RSS growth of the whole run (bytes) and the trace's op count.
"""

from __future__ import annotations

import argparse
import json
import re
import time


def _rss() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1)) * 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--cost-model", default="flops", choices=("flops", "measured"))
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import torch
    import transformers

    from tiny_backprop.costs import CostCache
    from tiny_backprop.planning import plan_model

    cfg = transformers.GPT2Config(n_layer=a.layers, n_embd=a.d, n_head=a.heads,
                                  n_positions=max(1024, a.seq))
    model = transformers.GPT2LMHeadModel(cfg).train()
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq))
    rss0 = _rss()
    cache = CostCache()  # shared: the first repeat times the ops, later ones reuse them
    runs = []
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        mp = plan_model(model, (), {"input_ids": ids, "labels": ids, "use_cache": False},
                        a.budget, cost_model=a.cost_model, cost_cache=cache)
        total = time.perf_counter() - t0
        runs.append({"total_s": total, "trace_s": mp.trace_seconds, "plan_s": mp.plan_seconds,
                     "regions": len(mp.regions.regions),
                     "predicted_peak_bytes": mp.predicted_peak_bytes})
    out = {"model": f"HF GPT-2 {a.layers}L d{a.d} seq{a.seq} batch{a.batch}",
           "cost_model": a.cost_model,
           "torch": torch.__version__, "runs": runs, "rss_growth_bytes": _rss() - rss0,
           "trace_method": mp.trace_method}
    if a.json:
        print(json.dumps(out, indent=2))
    else:
        print(out["model"], "| torch", out["torch"], "| trace on", out["trace_method"],
              "tensors | cost model", a.cost_model)
        for i, r in enumerate(runs):
            print(f"  repeat {i}: trace+plan {r['total_s']:.3f} s (trace {r['trace_s']:.3f} s, "
                  f"plan {r['plan_s'] * 1e3:.1f} ms), {r['regions']} regions")
        print(f"  RSS growth over all repeats: {out['rss_growth_bytes'] / 2**20:.1f} MiB")
    return out


if __name__ == "__main__":
    main()
