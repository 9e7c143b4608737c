"""``python -m tiny_backprop.analyze``: trace a zoo model and print what the planner sees.

Prints how the forward was traced (fake or real tensors, ops, module calls, time), the
per-block chain (per stage: module call, forward GFLOP-equivalents, boundary input x_i
and saved g_i in MiB), the saved-bytes profile over the forward's ops (sparkline + max
per 10% of ops) and the plans at a few budgets (predicted peak, recompute cost, regions).
``--json`` prints the same data as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .blocks import BlockChain
from .trace.types import Trace

MIB = 1024 * 1024
_BARS = " ▁▂▃▄▅▆▇█"
BUDGETS = (1.0, 0.5, 0.3)


def bucket_max(values: list[int], buckets: int) -> list[int]:
    """Max of ``values`` over ``buckets`` equal slices of positions (fewer if too short)."""
    if not values:
        return []
    buckets = max(1, min(buckets, len(values)))
    out = []
    for b in range(buckets):
        lo, hi = b * len(values) // buckets, (b + 1) * len(values) // buckets
        out.append(max(values[lo:max(hi, lo + 1)]))
    return out


def sparkline(values: list[int], width: int = 60) -> str:
    """One character per bucket (max over the bucket), scaled to the overall max."""
    maxima = bucket_max(values, width)
    top = max(maxima, default=0)
    if top <= 0:
        return _BARS[0] * len(maxima)
    return "".join(_BARS[round(v / top * (len(_BARS) - 1))] for v in maxima)


def saved_profile(trace: Trace) -> list[int]:
    """Cumulative saved activation bytes after each op of the forward (storages once)."""
    per_op = [0] * max(1, len(trace.ops))
    seen: set[int] = set()
    calls = trace.calls
    # a saved tensor is charged at the op that made its call's last op so far
    for sid, nbytes, call, _ in trace.saved_order:
        if sid in seen:
            continue
        seen.add(sid)
        at = calls[call].end_op - 1 if call >= 0 else len(per_op) - 1
        per_op[min(max(at, 0), len(per_op) - 1)] += nbytes
    out, total = [], 0
    for v in per_op:
        total += v
        out.append(total)
    return out


def report_data(info: dict[str, Any], trace: Trace, chain: BlockChain,
                plans: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data (bytes, FLOP-equivalents)."""
    names = ["<pre>"] + [c.path for c in chain.calls] + ["<post>"]
    stages = [{"stage": i, "call": names[i], "forward_flops": chain.forward_cost[i],
               "input_bytes": chain.input_bytes[i], "saved_bytes": chain.saved_bytes[i]}
              for i in range(len(chain))]
    profile = saved_profile(trace)
    return {**info, "trace_method": trace.method, "ops": len(trace.ops),
            "calls": len(trace.calls), "trace_seconds": trace.seconds,
            "container": chain.container, "stages": stages,
            "saved_bytes_max_per_10pct": bucket_max(profile, 10),
            "saved_bytes": trace.saved_bytes, "plans": plans}


def format_report(data: dict[str, Any], profile: list[int]) -> str:
    """The human-readable table for ``report_data``'s result."""
    head = f"{data.get('model', '?')} ({data.get('profile', '?')})"
    lines = [
        f"{head}: traced on {data['trace_method']} tensors in {data['trace_seconds'] * 1e3:.0f} "
        f"ms, {data['ops']} ops, {data['calls']} module calls; blocks: "
        f"{data['container'] or '<top-level calls>'}, {len(data['stages'])} stages",
        "",
        f"{'stage':>5}  {'call':<32} {'GFLOP':>9} {'x_i MiB':>9} {'g_i MiB':>9}",
    ]
    for s in data["stages"]:
        call = s["call"] if len(s["call"]) <= 32 else "…" + s["call"][-31:]
        lines.append(f"{s['stage']:>5}  {call:<32} {s['forward_flops'] / 1e9:>9.3f} "
                     f"{s['input_bytes'] / MIB:>9.2f} {s['saved_bytes'] / MIB:>9.2f}")
    buckets = " ".join(f"{b / MIB:.1f}" for b in data["saved_bytes_max_per_10pct"])
    lines += ["", f"saved |{sparkline(profile)}| {data['saved_bytes'] / MIB:.2f} MiB in all",
              f"saved bytes by 10% of ops (MiB): {buckets}", ""]
    for p in data["plans"]:
        if "error" in p:
            lines.append(f"budget {p['budget']}: {p['error']}")
            continue
        lines.append(f"budget {p['budget']}: predicted peak {p['predicted_peak_bytes'] / MIB:.2f}"
                     f" MiB, recompute +{p['recompute_pct']:.1f}%, {p['regions']} regions")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .zoo import MODELS, PROFILES

    p = argparse.ArgumentParser(prog="python -m tiny_backprop.analyze", description=__doc__)
    p.add_argument("--model", choices=MODELS, default="gpt2")
    p.add_argument("--profile", choices=PROFILES, default="small")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--timeline", metavar="PNG", default=None,
                   help="also run one tracked step at --budget and draw its memory timeline")
    p.add_argument("--budget", type=float, default=0.5,
                   help="fraction of the store-all peak for --timeline (default 0.5)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = parse_args(argv)
    from . import zoo
    from .blocks import block_chain
    from .errors import BudgetError
    from .planning import plan_trace
    from .trace import trace_model

    work = zoo.build(args.model, args.profile, seed=args.seed)
    trace = trace_model(work.model.train(), work.args, work.kwargs)
    chain = block_chain(work.model, trace)
    plans = []
    for b in BUDGETS:
        try:
            mp = plan_trace(work.model, trace, b)
        except BudgetError as e:
            plans.append({"budget": b, "error": str(e)})
            continue
        cp = mp.chain_plan
        base = cp.total_cost - cp.recompute_cost
        plans.append({"budget": b, "predicted_peak_bytes": mp.predicted_peak_bytes,
                      "recompute_pct": 100.0 * cp.recompute_cost / base if base else 0.0,
                      "regions": len(mp.regions.regions)})
    data = report_data({"model": args.model, "profile": args.profile}, trace, chain, plans)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_report(data, saved_profile(trace)))
    if args.timeline:
        from .hc_module import HCModule
        from .timeline import plot_timeline

        hc = HCModule(work.model, args.budget, track_memory=True)
        out = hc(*work.args, **work.kwargs)
        (out if out.dim() == 0 else out.float().pow(2).mean()).backward()
        plot_timeline(hc.memory_timeline(), args.timeline, budget_bytes=hc.plan.budget_bytes,
                      title=f"{args.model} ({args.profile}), budget {args.budget}")
        print(f"timeline: {args.timeline}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
