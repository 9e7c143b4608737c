"""``python -m tiny_backprop.analyze``: capture a zoo model and print its memory structure.

Prints the capture method and node count, the stage chain (per stage: node range,
first/last op or module path, forward GFLOP, boundary input x_i and saved g_i in MiB),
the live-frontier profile (sparkline + max per 10% of positions), the store-all peak
and the lower bound. ``--json`` prints the same data as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .chain import GraphAnalysis, StageChain
from .ir import GraphIR

MIB = 1024 * 1024
_BARS = " ▁▂▃▄▅▆▇█"


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


def node_label(ir: GraphIR, index: int, width: int = 28) -> str:
    """Module path (or op target when at the root) of node ``index``, shortened."""
    node = ir.nodes[index]
    label = node.module_path or node.target
    if node.module_path and node.op != "call_module":
        label = f"{node.module_path}:{node.target.split('.')[1] if node.target.startswith('aten.') else node.target}"
    return label if len(label) <= width else "…" + label[-(width - 1):]


def report_data(cap_info: dict[str, Any], ir: GraphIR, analysis: GraphAnalysis,
                chain: StageChain) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data (bytes, FLOPs)."""
    stages = []
    for i, (start, end) in enumerate(chain.bounds):
        stages.append({
            "stage": i,
            "start": start,
            "end": end,
            "first": node_label(ir, chain.topo_order[start]) if end > start else "",
            "last": node_label(ir, chain.topo_order[end - 1]) if end > start else "",
            "forward_flops": chain.forward_cost[i],
            "input_bytes": chain.input_bytes[i],
            "saved_bytes": chain.saved_bytes[i],
        })
    return {
        **cap_info,
        "nodes": len(ir),
        "stages": stages,
        "frontier_bytes_max_per_10pct": bucket_max(analysis.frontier_bytes, 10),
        "frontier_peak_bytes": max(analysis.frontier_bytes, default=0),
        "store_all_peak_bytes": analysis.store_all_peak,
        "lower_bound_bytes": analysis.lower_bound,
    }


def format_report(data: dict[str, Any], frontier: list[int]) -> str:
    """The human-readable table for ``report_data``'s result."""
    head = f"{data.get('model', '?')} ({data.get('profile', '?')})"
    lines = [
        f"{head}: captured by {data.get('method', '?')}, {data['nodes']} nodes, "
        f"{len(data['stages'])} stages",
        "",
        f"{'stage':>5} {'nodes':>11}  {'first':<28} {'last':<28} {'GFLOP':>9} "
        f"{'x_i MiB':>9} {'g_i MiB':>9}",
    ]
    for s in data["stages"]:
        lines.append(
            f"{s['stage']:>5} {s['start']:>5}:{s['end']:<5}  {s['first']:<28} {s['last']:<28} "
            f"{s['forward_flops'] / 1e9:>9.3f} {s['input_bytes'] / MIB:>9.2f} "
            f"{s['saved_bytes'] / MIB:>9.2f}"
        )
    buckets = " ".join(f"{b / MIB:.1f}" for b in data["frontier_bytes_max_per_10pct"])
    lines += [
        "",
        f"frontier |{sparkline(frontier)}| peak {data['frontier_peak_bytes'] / MIB:.2f} MiB",
        f"frontier max per 10% of positions (MiB): {buckets}",
        f"store-all peak: {data['store_all_peak_bytes'] / MIB:.2f} MiB",
        f"lower bound:    {data['lower_bound_bytes'] / MIB:.2f} MiB",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    from .zoo import MODELS, PROFILES

    p = argparse.ArgumentParser(prog="python -m tiny_backprop.analyze", description=__doc__)
    p.add_argument("--model", choices=MODELS, default="gpt2")
    p.add_argument("--profile", choices=PROFILES, default="small")
    p.add_argument("--max-stages", type=int, default=None,
                   help="coarsen into at most this many stages (default: the chain's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = p.parse_args(argv)
    if args.max_stages is not None and args.max_stages < 1:
        p.error(f"--max-stages must be at least 1, got {args.max_stages}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    args = parse_args(argv)
    from . import chain, zoo
    from .capture import capture

    work = zoo.build(args.model, args.profile, seed=args.seed)
    cap = capture(work.model, *work.args, **work.kwargs)
    try:
        analysis = chain.analyze_graph(cap.ir)
        stages = chain.stage_chain(cap.ir, max_stages=args.max_stages)
    except NotImplementedError as e:
        print(f"analyze: graph analysis is not available yet ({e})", file=sys.stderr)
        return 2
    info = {"model": args.model, "profile": args.profile, "method": cap.method}
    data = report_data(info, cap.ir, analysis, stages)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(format_report(data, analysis.frontier_bytes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
