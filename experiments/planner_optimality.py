"""How far is the frontier-chain optimum from the exact DAG optimum?

    python -m experiments.planner_optimality [--graphs 6] [--nodes 8] [--out results/]

For small random DAGs (<= 30 nodes) built by hand as a GraphIR, plan the frontier
chain (``tiny_backprop.chain.stage_chain`` -> optimal DP) and solve the general DAG
recompute problem exactly as a MILP with HiGHS (Checkmate's formulation, Jain et al.
2020: R/S/FREE binaries per stage of the joint forward+backward graph, memory U per
stage and step). Both at the same budget in bytes; reports the recompute cost of each
and the gap. Writes planner_optimality.csv, .md and .png under --out.

Memory model of the MILP: forward node v holds output_bytes; the backward node of v
reads v's inputs, v itself when it has saved bytes or its output is saved, and the
gradients of v's users; gradients are 0 bytes and extra saved bytes are added to the
node's output (both models count activations only, as the chain planner does).
Until the graph engineer's ``stage_chain`` lands, a one-node-per-stage frontier chain
built here stands in (column `chain` says which was used).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import time
from pathlib import Path

from tiny_backprop import chain as chain_mod
from tiny_backprop.errors import BudgetError
from tiny_backprop.ir import FLAG_INPUT, FLAG_OUTPUT, GraphIR, NodeInfo
from tiny_backprop.plan import plan_chain, store_all_bytes


def random_dag(n: int, rng: random.Random) -> GraphIR:
    """A random DAG of n nodes: a spine with skip connections; node 0 is the input."""
    nodes = [NodeInfo("x", "placeholder", "x", (), rng.randint(1, 8) * 64, 0, 0.0, FLAG_INPUT)]
    for i in range(1, n):
        inputs = {i - 1}
        if i >= 2 and rng.random() < 0.35:
            inputs.add(rng.randrange(0, i - 1))
        flags = FLAG_OUTPUT if i == n - 1 else 0
        nodes.append(
            NodeInfo(
                f"n{i}", "call_function", "op", tuple(sorted(inputs)),
                rng.randint(1, 8) * 64, rng.choice([0, 0, 64, 128]),
                float(rng.randint(1, 10)), flags,
            )
        )
    return GraphIR(nodes=nodes, method="synthetic")


def frontier_chain(ir: GraphIR) -> chain_mod.StageChain:
    """One node per stage: x_i = bytes of outputs made before i and used at or after i."""
    n = len(ir.nodes)
    last_use = [i for i in range(n)]
    for i, node in enumerate(ir.nodes):
        for j in node.inputs:
            last_use[j] = max(last_use[j], i)
    x = [sum(ir.nodes[j].output_bytes for j in range(i) if last_use[j] >= i) for i in range(n)]
    x[0] = ir.nodes[0].output_bytes
    return chain_mod.StageChain(
        bounds=[(i, i + 1) for i in range(n)],
        forward_cost=[nd.cost for nd in ir.nodes],
        backward_cost=[2.0 * nd.cost for nd in ir.nodes],
        input_bytes=x,
        saved_bytes=[nd.extra_saved_bytes for nd in ir.nodes],
        topo_order=list(range(n)),
        never_recompute=[False] * n,
    )


CHAIN = "stage_chain"  # or "frontier": the one-node-per-stage stand-in below


def get_chain(ir: GraphIR) -> tuple[chain_mod.StageChain, str]:
    """The graph engineer's stage_chain (or the local stand-in with CHAIN="frontier")."""
    if CHAIN == "frontier":
        return frontier_chain(ir), "local-frontier"
    try:
        return chain_mod.stage_chain(ir), "stage_chain"
    except NotImplementedError:
        return frontier_chain(ir), "local-frontier"


def milp_optimum(ir: GraphIR, budget: int, time_limit: float) -> tuple[float, str]:
    """Least recompute cost of the joint forward+backward graph within `budget` bytes
    (Checkmate MILP). Returns (recompute cost or inf, solver status)."""
    import highspy

    n = len(ir.nodes)
    users: list[list[int]] = [[] for _ in range(n)]
    for i, nd in enumerate(ir.nodes):
        for j in nd.inputs:
            users[j].append(i)
    # joint graph: 0..n-1 forward, n + r = backward of forward node n-1-r
    N = 2 * n
    mem = [nd.output_bytes + nd.extra_saved_bytes for nd in ir.nodes] + [0] * n
    cost = [nd.cost for nd in ir.nodes] + [2.0 * ir.nodes[n - 1 - r].cost for r in range(n)]
    deps: list[set[int]] = [set(nd.inputs) for nd in ir.nodes]
    for r in range(n):
        v = n - 1 - r
        d = set(ir.nodes[v].inputs) | {v}
        d |= {n + (n - 1 - u) for u in users[v]}
        deps.append(d)
    jusers: list[list[int]] = [[] for _ in range(N)]
    for k in range(N):
        for i in deps[k]:
            jusers[i].append(k)

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    R = {(t, i): h.addBinary() for t in range(N) for i in range(t + 1)}
    S = {(t, i): h.addBinary() for t in range(1, N) for i in range(t)}
    for t in range(N):
        h.addConstr(R[t, t] == 1)
        for i in range(t + 1):
            for j in deps[i]:
                h.addConstr(R[t, i] <= R[t, j] + (S[t, j] if t > 0 and j < t else 0))
        if t + 1 < N:
            for i in range(t + 1):
                h.addConstr(S[t + 1, i] <= R[t, i] + (S[t, i] if (t, i) in S else 0))
    for t in range(N):
        base = sum(mem[i] * S[t, i] for i in range(t)) if t > 0 else 0
        U = base + mem[0] * R[t, 0]
        for k in range(t + 1):
            if k > 0:
                U = U + mem[k] * R[t, k]
            h.addConstr(U <= budget)
            freed = 0
            for i in sorted(deps[k] | {k}):
                if i > t:
                    continue
                later = [j for j in jusers[i] if k < j <= t]
                nxt = S[t + 1, i] if t + 1 < N else 0
                hazards = (1 - R[t, k]) + nxt + sum(R[t, j] for j in later)
                F = h.addBinary()
                h.addConstr(1 - F <= hazards)
                h.addConstr((2 + len(later)) * (1 - F) >= hazards)
                # freeing i needs i present: F <= R[t, i] (a checkpoint is freed only
                # after it is no longer needed, which the hazards already cover)
                h.addConstr(F <= R[t, i] + (S[t, i] if (t, i) in S else 0))
                freed = freed + mem[i] * F
            U = U - freed
    total = sum(cost[i] * R[t, i] for t in range(N) for i in range(t + 1))
    h.minimize(total)
    status = h.modelStatusToString(h.getModelStatus())
    if status != "Optimal":
        return math.inf, status
    obj = h.getInfo().objective_function_value
    return obj - sum(cost), status


def run(graphs: int, nodes: int, fractions: list[float], out: Path, seed: int,
        time_limit: float) -> list[dict]:
    """Plan and solve every (graph, budget) case; write CSV, markdown and PNG."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for gi in range(graphs):
        ir = random_dag(nodes, rng)
        sc, which = get_chain(ir)
        full = store_all_bytes(sc.input_bytes, sc.saved_bytes)
        for frac in fractions:
            budget = int(frac * full)
            t0 = time.perf_counter()
            try:
                p = plan_chain(sc.forward_cost, sc.backward_cost, sc.input_bytes,
                               sc.saved_bytes, budget)
                chain_rc = p.recompute_cost
            except BudgetError:
                chain_rc = math.inf
            t1 = time.perf_counter()
            milp_rc, status = milp_optimum(ir, budget, time_limit)
            t2 = time.perf_counter()
            gap = chain_rc - milp_rc if math.isfinite(chain_rc) and math.isfinite(milp_rc) else math.nan
            rows.append(dict(graph=gi, nodes=nodes, chain=which, stages=len(sc), budget=budget,
                             fraction=frac, chain_recompute=chain_rc, milp_recompute=milp_rc,
                             gap=gap, milp_status=status, chain_s=round(t1 - t0, 4),
                             milp_s=round(t2 - t1, 2)))
            print(rows[-1], flush=True)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "planner_optimality.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(out / "planner_optimality.md", "w") as fh:
        fh.write("| " + " | ".join(rows[0]) + " |\n|" + "---|" * len(rows[0]) + "\n")
        for r in rows:
            fh.write("| " + " | ".join(str(v) for v in r.values()) + " |\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for frac in fractions:
        pts = [(r["milp_recompute"], r["chain_recompute"]) for r in rows
               if r["fraction"] == frac and math.isfinite(r["gap"])]
        if pts:
            ax.scatter(*zip(*pts), label=f"budget {frac:.0%} of store-all")
    lim = max([1.0] + [max(a, b) for r in rows for a, b in [(r["milp_recompute"], r["chain_recompute"])]
                       if math.isfinite(a) and math.isfinite(b)])
    ax.plot([0, lim], [0, lim], "k--", lw=1)
    ax.set_xlabel("DAG optimum (MILP) recompute cost")
    ax.set_ylabel("chain plan recompute cost")
    ax.set_title(f"frontier chain vs exact DAG optimum ({nodes}-node DAGs)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "planner_optimality.png", dpi=120)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--graphs", type=int, default=6)
    ap.add_argument("--nodes", type=int, default=8, help="DAG size (<= 30)")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.7, 0.9])
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--chain", choices=("stage_chain", "frontier"), default="stage_chain",
                    help="frontier: one node per stage (stage_chain merges small DAGs whole)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="seconds per MILP")
    args = ap.parse_args(argv)
    if not 2 <= args.nodes <= 30:
        ap.error("--nodes must be in [2, 30]")
    global CHAIN
    CHAIN = args.chain
    run(args.graphs, args.nodes, args.fractions, args.out, args.seed, args.time_limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
