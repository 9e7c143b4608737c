"""How far is the frontier-chain optimum from the exact DAG optimum?

    python -m experiments.planner_optimality [--graphs 6] [--nodes 10] [--out results/]

For small random DAGs (<= 30 nodes) built as a GraphIR, plan with the real path,
``tiny_backprop.plan(ir, budget)`` (``stage_chain`` coarsening, live intervals, the
transient term, 512 slots), and solve the general DAG recompute problem exactly as a
MILP with HiGHS, following the formulation of Checkmate (Jain et al., MLSys 2020):
binaries R[t,i] (compute i in stage t), S[t,i] (i held entering stage t), FREE[t,i,k]
(i freed after step k of stage t), memory U per stage and step. Both get the same
budget in bytes. Writes planner_optimality.csv, .md and .png under --out.

MILP memory model (and how it differs from the chain planner's, docs/theory.md):

* Activations only; gradients are 0 bytes (as in the chain model). Backward nodes
  therefore need no R/S variables: backward stage t runs B_v exactly once (cost 2 x
  forward of v, a constant), in reverse topological order.
* Items of the forward graph: every node v (output_bytes), and for a node with
  extra_saved_bytes an item e_v of that size that can only be made in a step that
  computes v (R[t,e_v] <= R[t,v], cost 0: running v "with grad"). Running v without
  e_v is the no-grad run of a recompute region.
* B_v needs: v if v is OUTPUT_SAVED, every input u of v that is OUTPUT_SAVED, e_v.
  (The flag does not say which backward saves u, so a saved u is needed by its own
  backward and by its consumers'; the last of these is B_u, as in the chain model,
  which holds a saved value until its producer's backward.)
* Graph input (node 0) is held throughout and never recomputed (x_1 of the chain).
  The FLAG_OUTPUT node is held from its forward to the end (graph.h: it lives to
  the end).
* A value occupies memory from the step that computes it until the step after its
  last use in that stage unless it is checkpointed into the next stage; memory is
  checked after every step (inputs and output of the step both present).

Differences from the chain planner (the reason neither is a relaxation of the other
in general): (1) the MILP is node-level and non-persistent; it may free a stage's
saved bytes node by node during that stage's backward and recompute any subset of
nodes, so it can beat the chain. (2) The chain model does not see values made and
consumed inside one stage that nobody saves (graph.h: "transients inside a stage");
the MILP counts them, so at a budget below the MILP's own store-all peak it can be
*worse* than the chain. (3) The chain rounds sizes up to 512 slots (never in its
favour). On graphs where every value is saved and every node is its own stage,
difference (2) vanishes and the MILP admits every chain schedule: there
milp <= ours holds (tests/test_planner_experiment.py asserts it).
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

from tiny_backprop import chain as chain_mod
from tiny_backprop.errors import BudgetError
from tiny_backprop.ir import FLAG_INPUT, FLAG_OUTPUT, FLAG_OUTPUT_SAVED, GraphIR, NodeInfo
from tiny_backprop.plan import plan as plan_graph

DEFAULT_FRACTIONS = [1.0, 0.85, 0.7, 0.6, 0.5, 0.35]


def random_dag(n: int, rng: random.Random, p_saved: float = 0.8, p_skip: float = 0.35,
               skips: bool = True) -> GraphIR:
    """A random DAG of n nodes that looks like a captured one.

    A spine (node i reads i-1) with skip connections (with probability p_skip node i
    also reads a random earlier node), a fraction p_saved of the values flagged
    OUTPUT_SAVED, some extra saved bytes (masks, statistics), costs 1..10. Node 0 is
    the graph input, node n-1 the output (a 4-byte scalar loss). skips=False, p_saved=1 gives a pure chain.
    """
    nodes = [NodeInfo("x", "placeholder", "x", (), rng.randint(1, 8) * 64, 0, 0.0, FLAG_INPUT)]
    for i in range(1, n):
        inputs = {i - 1}
        if skips and i >= 2 and rng.random() < p_skip:
            inputs.add(rng.randrange(0, i - 1))
        size, extra = rng.randint(1, 8) * 64, rng.choice([0, 0, 0, 64, 128])
        flags = FLAG_OUTPUT_SAVED if rng.random() < p_saved else 0
        if i == n - 1:  # a scalar loss: 4 bytes, nothing saved
            size, extra, flags = 4, 0, FLAG_OUTPUT
        nodes.append(
            NodeInfo(f"n{i}", "call_function", "op", tuple(sorted(inputs)), size, extra,
                     float(rng.randint(1, 10)), flags)
        )
    return GraphIR(nodes=nodes, method="synthetic")


@dataclass
class MilpResult:
    """Recompute cost (inf if none found), best lower bound, status, seconds, and the
    schedule found: for every stage the items computed and the items held entering it."""

    recompute: float
    bound: float
    status: str
    seconds: float
    computed: list[list[int]]
    held: list[list[int]]


def _items(ir: GraphIR) -> tuple[list[int], list[int], list[int], list[set[int]], list[set[int]]]:
    """Forward items in step order: node of each item, its bytes, the item of every
    node, forward deps of every item, deps of every node's backward (item indices)."""
    node_of: list[int] = []
    mem: list[int] = []
    item: list[int] = []
    extra: dict[int, int] = {}
    for v, nd in enumerate(ir.nodes):
        item.append(len(node_of))
        node_of.append(v)
        mem.append(nd.output_bytes)
        if nd.extra_saved_bytes > 0:
            extra[v] = len(node_of)
            node_of.append(v)
            mem.append(nd.extra_saved_bytes)
    deps: list[set[int]] = [set() for _ in node_of]
    for v, nd in enumerate(ir.nodes):
        deps[item[v]] = {item[u] for u in nd.inputs}
        if v in extra:
            deps[extra[v]] = {item[v]}
    bdeps: list[set[int]] = []
    for v, nd in enumerate(ir.nodes):
        d = {item[u] for u in nd.inputs if ir.nodes[u].has(FLAG_OUTPUT_SAVED)}
        if nd.has(FLAG_OUTPUT_SAVED):
            d.add(item[v])
        if v in extra:
            d.add(extra[v])
        bdeps.append(d)
    return node_of, mem, item, deps, bdeps


def milp_store_all_peak(ir: GraphIR) -> int:
    """Peak of the MILP's memory model for the no-recompute schedule (each value freed
    after its last use): the least budget at which the MILP needs no recompute."""
    node_of, mem, item, deps, bdeps = _items(ir)
    n = len(ir.nodes)
    last = {i: i for i in range(len(node_of))}  # last step using the item (steps:
    # forward items 0..m-1, then backward of node v at step m + (n-1-v))
    m = len(node_of)
    for k, d in enumerate(deps):
        for i in d:
            last[i] = max(last[i], k)
    for v in range(n):
        for i in bdeps[v]:
            last[i] = max(last[i], m + n - 1 - v)
    for i in (item[0], item[n - 1]):
        last[i] = m + n
    held = peak = 0
    for step in range(m + n):
        if step < m:
            held += mem[step]
        peak = max(peak, held)
        held -= sum(mem[i] for i in range(min(step + 1, m)) if last[i] == step)
    return peak


def milp_optimum(ir: GraphIR, budget: int, time_limit: float) -> MilpResult:
    """Least recompute cost of one forward + backward of `ir` within `budget` bytes
    (Checkmate-style MILP; model in the module docstring)."""
    import highspy

    t0 = time.perf_counter()
    node_of, mem, item, deps, bdeps = _items(ir)
    n, m = len(ir.nodes), len(node_of)
    cost = [ir.nodes[node_of[i]].cost if item[node_of[i]] == i else 0.0 for i in range(m)]
    out_item = item[n - 1]
    users: list[list[int]] = [[] for _ in range(m)]
    for k in range(m):
        for i in deps[k]:
            users[i].append(k)

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit))
    h.setOptionValue("threads", 1)
    T = 2 * n  # stages 0..n-1: forward node t first computed; n + r: backward of n-1-r

    def avail(t: int) -> int:
        """Items that may be computed in stage t (a prefix of the item order)."""
        return (item[t + 1] if t + 1 < n else m) if t < n else m

    R: dict[tuple[int, int], object] = {}
    S: dict[tuple[int, int], object] = {}
    for t in range(T):
        for i in range(avail(t)):
            R[t, i] = h.addBinary()
        if t > 0:
            for i in range(avail(t - 1)):
                S[t, i] = h.addBinary()

    def present(t: int, i: int) -> object:
        return R.get((t, i), 0) + S.get((t, i), 0)

    for t in range(T):
        if t < n:
            h.addConstr(R[t, item[t]] == 1)
        for i in range(avail(t)):
            if node_of[i] == 0 and t > 0:  # the graph input: held, never recomputed
                h.addConstr(R[t, i] == 0)
            if item[node_of[i]] != i:  # extra saved bytes: only with its node
                h.addConstr(R[t, i] <= R[t, item[node_of[i]]])
            for j in deps[i]:
                h.addConstr(R[t, i] <= R.get((t, j), 0) + S.get((t, j), 0))
        if t >= n:
            for j in bdeps[n - 1 - (t - n)]:
                h.addConstr(R.get((t, j), 0) + S.get((t, j), 0) >= 1)
        if t + 1 < T:
            for i in range(avail(t)):
                h.addConstr(S[t + 1, i] <= present(t, i))
        if t >= 1:
            h.addConstr(S[t, item[0]] == 1)
        if t > n - 1:
            h.addConstr(S[t, out_item] == 1)

    # Memory: U after each step of each stage (forward items in order, then B_v).
    for t in range(T):
        bv = n - 1 - (t - n) if t >= n else -1
        steps = list(range(avail(t))) + ([-1] if bv >= 0 else [])
        U: object = sum(mem[i] * S[t, i] for i in range(avail(t - 1))) if t > 0 else 0
        for pos, k in enumerate(steps):
            if k >= 0:
                U = U + mem[k] * R[t, k]
            h.addConstr(U <= budget)
            # values that may be freed after step k: k's deps, k itself, B's deps
            cand = (deps[k] | {k}) if k >= 0 else set(bdeps[bv])
            freed: object = 0
            for i in sorted(cand):
                later = [j for j in users[i] if j in steps[pos + 1:]]
                b_later = bv >= 0 and k >= 0 and i in bdeps[bv]
                nxt = S[t + 1, i] if (t + 1, i) in S else 0
                run_k = (1 - R[t, k]) if k >= 0 else 0
                hazards = run_k + nxt + sum(R[t, j] for j in later) + (1 if b_later else 0)
                F = h.addBinary()
                h.addConstr(F + hazards >= 1)
                h.addConstr((3 + len(later)) * (1 - F) >= hazards)
                h.addConstr(F <= present(t, i))
                freed = freed + mem[i] * F
            U = U - freed
    h.minimize(sum(cost[i] * R[key] for key in R for i in [key[1]]))
    status = h.modelStatusToString(h.getModelStatus())
    info = h.getInfo()
    base = sum(nd.cost for nd in ir.nodes)
    if status == "Infeasible" or info.primal_solution_status != 2:  # 2: feasible point
        rec = math.inf
    else:
        rec = info.objective_function_value - base
    bound = info.mip_dual_bound - base if status != "Infeasible" else math.inf
    computed: list[list[int]] = []
    held: list[list[int]] = []
    if math.isfinite(rec):
        x = h.getSolution().col_value
        idx = {key: var.index for key, var in R.items()}
        sdx = {key: var.index for key, var in S.items()}
        computed = [[i for i in range(avail(t)) if x[idx[t, i]] > 0.5] for t in range(T)]
        held = [[i for i in range(m) if (t, i) in sdx and x[sdx[t, i]] > 0.5] for t in range(T)]
    return MilpResult(max(rec, 0.0), max(bound, 0.0) if math.isfinite(bound) else bound,
                      status, time.perf_counter() - t0, computed, held)


def replay(ir: GraphIR, computed: list[list[int]], held: list[list[int]]) -> tuple[float, int]:
    """Check a MILP schedule independently of its linearisation: (recompute cost, peak).

    Every step's inputs must be present; each value is dropped right after its last
    use in the stage unless held into the next one. Raises AssertionError if invalid.
    """
    node_of, mem, item, deps, bdeps = _items(ir)
    n = len(ir.nodes)
    T = 2 * n
    total = peak = 0
    for t in range(T):
        live = set(held[t])
        if t > 0:
            assert live <= set(computed[t - 1]) | set(held[t - 1]), f"stage {t}: held from nowhere"
        steps: list[tuple[int, set[int]]] = [(k, deps[k]) for k in computed[t]]
        if t < n:
            assert item[t] in computed[t], f"stage {t} does not compute node {t}"
        else:
            steps.append((-1, bdeps[n - 1 - (t - n)]))
        nxt = set(held[t + 1]) if t + 1 < T else {item[0], item[n - 1]}
        for pos, (k, need) in enumerate(steps):
            assert need <= live, f"stage {t} step {k}: missing {need - live}"
            if k >= 0:
                assert node_of[k] != 0 or t == 0, "graph input recomputed"
                total += ir.nodes[node_of[k]].cost if item[node_of[k]] == k else 0.0
                live.add(k)
            peak = max(peak, sum(mem[i] for i in live))
            later = set().union(*(d | ({j} if j >= 0 else set()) for j, d in steps[pos + 1:]))
            live = {i for i in live if i in nxt or i in later}
    return total - sum(nd.cost for nd in ir.nodes), peak


def ours(ir: GraphIR, budget: int) -> tuple[float, int, float]:
    """(recompute cost or inf, number of stages, plan seconds) of tiny_backprop.plan."""
    sc = chain_mod.stage_chain(ir)
    t0 = time.perf_counter()
    try:
        rc = plan_graph(ir, budget).recompute_cost
    except BudgetError:
        rc = math.inf
    return rc, len(sc), time.perf_counter() - t0


def reference_peaks(ir: GraphIR) -> tuple[int, int, int]:
    """(graph store-all peak, chain-predicted store-all peak, MILP-model store-all)."""
    graph = chain_mod.analyze_graph(ir).store_all_peak
    pred = plan_graph(ir, 1 << 60, planner="store_all").peak_bytes
    return graph, pred, milp_store_all_peak(ir)


def run(graphs: int, nodes: int, fractions: list[float], out: Path, seed: int,
        time_limit: float, chain_graphs: int = 1) -> list[dict]:
    """Plan and solve every (graph, budget) case; write CSV, markdown and PNG.

    `chain_graphs` extra pure chains (no skips, all values saved) are the sanity check.
    """
    rng = random.Random(seed)
    cases = [("dag", random_dag(nodes, rng)) for _ in range(graphs)]
    cases += [("chain", random_dag(nodes, rng, p_saved=1.0, skips=False))
              for _ in range(chain_graphs)]
    rows: list[dict] = []
    for gi, (kind, ir) in enumerate(cases):
        graph_peak, pred_peak, milp_peak = reference_peaks(ir)
        ref = max(graph_peak, pred_peak, milp_peak)
        fwd = sum(nd.cost for nd in ir.nodes)
        for frac in fractions:
            budget = int(frac * ref)
            rc, stages, plan_s = ours(ir, budget)
            mr = milp_optimum(ir, budget, time_limit)
            fin = math.isfinite(rc) and math.isfinite(mr.recompute)
            gap = 100.0 * (rc - mr.recompute) / fwd if fin else math.nan
            gap_max = 100.0 * (rc - mr.bound) / fwd if math.isfinite(rc) and math.isfinite(mr.bound) else math.nan
            rows.append(dict(
                graph=gi, kind=kind, nodes=len(ir.nodes), stages=stages, fraction=frac,
                budget=budget, ref_peak=ref, graph_peak=graph_peak, chain_peak=pred_peak,
                milp_peak=milp_peak, fwd_cost=fwd, ours_recompute=rc,
                milp_recompute=round(mr.recompute, 3), milp_bound=round(mr.bound, 3),
                gap_pct=round(gap, 2), gap_max_pct=round(gap_max, 2),
                ours_ms=round(1000 * plan_s, 2), milp_s=round(mr.seconds, 2),
                milp_status=mr.status,
            ))
            print(rows[-1], flush=True)
    write_outputs(rows, fractions, out, time_limit)
    return rows


def write_outputs(rows: list[dict], fractions: list[float], out: Path, time_limit: float) -> None:
    """planner_optimality.csv, .md (with the run's header) and .png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "planner_optimality.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = ["graph", "kind", "nodes", "stages", "fraction", "budget", "ours_recompute",
            "milp_recompute", "milp_bound", "gap_pct", "gap_max_pct", "ours_ms", "milp_s",
            "milp_status"]
    with open(out / "planner_optimality.md", "w") as fh:
        fh.write("# Frontier-chain plan vs exact DAG optimum (MILP)\n\n"
                 "Measured 2026-11-25, CPU, torch 2.13.0, HiGHS via highspy (1 thread, "
                 f"{time_limit:g} s per solve). `python -m experiments.planner_optimality`.\n"
                 "Budget = fraction x max(graph, chain-predicted, MILP-model store-all peak). "
                 "gap_pct = (ours - milp) / total forward cost; gap_max_pct uses the MILP's "
                 "best bound (equal to gap_pct when Optimal). ours_recompute inf: below the chain "
                 "model's minimum budget; milp inf/Infeasible: below the MILP model's. Model and its differences: "
                 "module docstring of experiments/planner_optimality.py.\n\n")
        fh.write("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n")
        for r in rows:
            fh.write("| " + " | ".join(str(r[c]) for c in cols) + " |\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("dag", "o"), ("chain", "s")):
        pts = [(r["fraction"], r["gap_pct"]) for r in rows
               if r["kind"] == kind and math.isfinite(r["gap_pct"])]
        opt = [p for p, r in zip(pts, [r for r in rows if r["kind"] == kind
                                       and math.isfinite(r["gap_pct"])])
               if r["milp_status"] == "Optimal"]
        lim = [p for p in pts if p not in opt]
        if opt:
            ax.scatter(*zip(*opt), marker=marker, label=f"{kind} (MILP optimal)")
        if lim:
            ax.scatter(*zip(*lim), marker=marker, facecolors="none", edgecolors="k",
                       label=f"{kind} (MILP time-limited)")
    ax.axhline(0.0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("budget / store-all peak")
    ax.set_ylabel("gap: (ours - MILP) / forward cost [%]")
    ax.set_title("frontier-chain plan vs exact DAG optimum")
    ax.invert_xaxis()
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "planner_optimality.png", dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--graphs", type=int, default=6)
    ap.add_argument("--chain-graphs", type=int, default=1)
    ap.add_argument("--nodes", type=int, default=10, help="DAG size (<= 30)")
    ap.add_argument("--fractions", type=float, nargs="+", default=DEFAULT_FRACTIONS)
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--time-limit", type=float, default=20.0, help="seconds per MILP")
    args = ap.parse_args(argv)
    if not 2 <= args.nodes <= 30:
        ap.error("--nodes must be in [2, 30]")
    run(args.graphs, args.nodes, args.fractions, args.out, args.seed, args.time_limit,
        args.chain_graphs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
