"""Plan time vs graph size: tiny_backprop.plan on synthetic GraphIRs of up to 2,500 nodes.

    python experiments/plan_time.py --sizes 100 500 1000 2500 --out-dir results/experiments
    python experiments/plan_time.py --dry-run     # build the graphs, time analysis only

Graphs are residual chains (each op reads the previous op and, every ``skip`` ops, the
output of ``skip`` ops earlier), with deterministic pseudo-random sizes (bytes) and costs
(FLOPs), seeded. Writes plan_time.csv (nodes, stages, seconds per ``plan`` call: median of
``--repeats``; the Plan's own ``plan_time_s``) and plan_time.png. ``--dry-run`` skips the planner and times
``tiny_backprop.chain.stage_chain`` (graph analysis + coarsening), which exists already.
"""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tiny_backprop import ir as tir  # noqa: E402


def synthetic_ir(n_nodes: int, *, skip: int = 8, seed: int = 0) -> tir.GraphIR:
    """A residual-chain GraphIR with ``n_nodes`` nodes (node 0 input, last node output)."""
    if n_nodes < 2:
        raise ValueError("n_nodes must be >= 2")
    rng = random.Random(seed)
    nodes = [tir.NodeInfo("x", "placeholder", "x", (), 1 << 20, 0, 0.0, tir.FLAG_INPUT)]
    for i in range(1, n_nodes):
        inputs = (i - 1,) if i < skip or i % skip else (i - 1, i - skip)
        flags = tir.FLAG_OUTPUT_SAVED | (tir.FLAG_OUTPUT if i == n_nodes - 1 else 0)
        nodes.append(tir.NodeInfo(
            name=f"op{i}", op="call_function", target="aten.synthetic", inputs=inputs,
            output_bytes=rng.choice((1, 2, 4)) << 20, extra_saved_bytes=rng.choice((0, 0, 1 << 18)),
            cost=float(rng.randint(1, 64)) * 1e6, flags=flags))
    return tir.GraphIR(nodes, method="synthetic", meta={"seed": seed, "skip": skip})


def _time(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+",
                    default=[100, 250, 500, 750, 1000, 1500, 2000, 2500])
    ap.add_argument("--budget", default="0.5", help="budget passed to plan (fraction or bytes)")
    ap.add_argument("--planner", default="optimal", help="planner name passed to plan()")
    ap.add_argument("--slots", type=int, default=512, help="memory slots of the optimal DP")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out-dir", default="results/experiments")
    ap.add_argument("--dry-run", action="store_true",
                    help="time graph analysis/coarsening only (no planner needed)")
    args = ap.parse_args(argv)
    if any(n < 2 for n in args.sizes) or args.repeats < 1:
        ap.error("--sizes must be >= 2 and --repeats >= 1")
    from benchmarks.common import parse_budget
    from tiny_backprop.chain import stage_chain

    budget = parse_budget(args.budget)
    if not args.dry_run:
        try:
            from tiny_backprop import plan as tb_plan
        except Exception as exc:  # noqa: BLE001
            print(f"plan_time: tiny_backprop.plan unavailable ({exc}); use --dry-run", file=sys.stderr)
            return 1
    rows = []
    for n in args.sizes:
        g = synthetic_ir(n, seed=args.seed)
        chain = stage_chain(g)
        row: dict[str, Any] = {"nodes": n, "stages": len(chain),
                               "analysis_s": _time(lambda g=g: stage_chain(g), args.repeats)}
        if not args.dry_run:
            kw = {"planner": args.planner, "slots": args.slots}
            row["plan_s"] = _time(lambda g=g, kw=kw: tb_plan(g, budget, **kw), args.repeats)
            p = tb_plan(g, budget, **kw)
            row["plan_reported_s"] = getattr(p, "plan_time_s", None)
            row["predicted_peak_bytes"] = getattr(p, "predicted_peak_bytes", None)
            row["recompute_cost"] = getattr(p, "recompute_cost", None)
        rows.append(row)
        print(", ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "plan_time.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot(rows, out / "plan_time.png", "plan_s" if not args.dry_run else "analysis_s")
    print(f"wrote {out / 'plan_time.csv'} and {out / 'plan_time.png'}")
    return 0


def _plot(rows: list[dict[str, Any]], path: Path, key: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["nodes"] for r in rows], [r[key] for r in rows], "o-")
    ax.set_xlabel("graph nodes")
    ax.set_ylabel(f"{'plan' if key == 'plan_s' else 'analysis + coarsening'} time (s, median)")
    ax.set_title("tiny-backprop planning time vs graph size")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
