"""DAG-aware boundary accounting (live intervals): C planner, simulator and min budget
against the Python reference and brute force; """

from __future__ import annotations

import math
import random

import pytest

from tiny_backprop import _C
from tiny_backprop import _reference_planner as R
from tiny_backprop.plan import decode_nodes, plan_chain, simulate_tree


def _dag_chain(rng: random.Random, n: int):
    """Costs, sizes and intervals of a random DAG-like chain: values produced in stage j
    and last used by u > j (skips of random length), plus graph inputs in x_0."""
    f = [float(rng.randint(0, 5)) for _ in range(n)]
    b = [float(rng.randint(0, 9)) for _ in range(n)]
    g = [rng.randint(0, 6) for _ in range(n)]
    live = []
    for j in range(n - 1):
        for _ in range(rng.randint(0, 2)):
            live.append((j, rng.randint(j + 1, n - 1), rng.randint(0, 5)))
    x0 = rng.randint(0, 4)
    x = [x0 + sum(nb for j, u, nb in live if j < k <= u) for k in range(n)]
    return f, b, x, g, live


def test_plain_chain_intervals_give_identical_answers() -> None:
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 8)
        f = [float(rng.randint(0, 5)) for _ in range(n)]
        b = [float(rng.randint(0, 9)) for _ in range(n)]
        x = [rng.randint(0, 7) for _ in range(n)]
        g = [rng.randint(0, 7) for _ in range(n)]
        live = [(k - 1, k, x[k]) for k in range(1, n)]
        budget = rng.randint(0, sum(x) + sum(g) + 2)
        for slots in (512, 3):
            assert _C.plan_chain(f, b, x, g, budget, slots=slots) == _C.plan_chain(
                f, b, x, g, budget, slots=slots, live_intervals=live
            )
        assert _C.min_budget(f, b, x, g) == _C.min_budget(f, b, x, g, live_intervals=live)


@pytest.mark.parametrize("transient", [False, True])
def test_c_matches_reference_on_random_dags(transient: bool) -> None:
    rng = random.Random(2024)
    kw = dict(live_intervals=None, transient=transient)
    for it in range(1500):
        n = rng.randint(1, 7)
        f, b, x, g, live = _dag_chain(rng, n)
        kw["live_intervals"] = live
        mk = [rng.random() < 0.2 for _ in range(n)] if it % 3 == 0 else None
        budget = rng.randint(0, sum(x) + sum(g) + 2)
        ref_cost, _ = R.optimal(f, b, x, g, budget, mk, live, transient)
        res = _C.plan_chain(f, b, x, g, budget, must_keep=mk, **kw)
        mb = R.min_budget(x, g, mk, live, transient)
        min_c = _C.min_budget(f, b, x, g, must_keep=mk, **kw)
        assert min_c[0] == mb
        assert _C.simulate(f, b, x, g, min_c[2], must_keep=mk, **kw)[1] == mb
        if res is None:
            assert ref_cost == math.inf and budget < mb
            continue
        nodes, planned, cost, peak = res
        assert planned == ref_cost and cost == planned and peak <= budget
        assert R.simulate(f, b, x, g, decode_nodes(nodes), live, transient) == (cost, peak)


@pytest.mark.parametrize("transient", [False, True])
def test_brute_force_optimal_small_dags(transient: bool) -> None:
    rng = random.Random(31)
    trees = {n: R.all_trees(n) for n in range(1, 6)}
    for it in range(40):
        n = 1 + it % 5
        f, b, x, g, live = _dag_chain(rng, n)
        kw = dict(live_intervals=live, transient=transient)
        sims = []
        for t in trees[n]:
            sim = R.simulate(f, b, x, g, t, live, transient)
            assert simulate_tree(f, b, x, g, t, **kw) == sim
            sims.append(sim)
        for budget in sorted({rng.randint(0, sum(x) + sum(g) + 2) for _ in range(6)}):
            feasible = [c for c, p in sims if p <= budget]
            res = _C.plan_chain(f, b, x, g, budget, **kw)
            if not feasible:
                assert res is None
                continue
            assert res is not None and res[1] == min(feasible)
        assert _C.min_budget(f, b, x, g, **kw)[0] == min(p for _, p in sims)


def test_transient_term_only_adds_memory() -> None:
    rng = random.Random(5)
    for _ in range(300):
        n = rng.randint(2, 7)
        f, b, x, g, live = _dag_chain(rng, n)
        off = _C.min_budget(f, b, x, g, live_intervals=live)[0]
        on = _C.min_budget(f, b, x, g, live_intervals=live, transient=True)[0]
        assert on >= off


def test_discretised_dag_plans_stay_in_budget() -> None:
    rng = random.Random(3)
    for _ in range(30):
        n = rng.randint(10, 40)
        f, b, x, g, live = _dag_chain(rng, n)
        live = [(j, u, nb * 1000 + rng.randint(0, 999)) for j, u, nb in live]
        g = [v * 1000 for v in g]
        x = [x[0] * 1000] + [0] * (n - 1)
        store_all = _C.simulate(f, b, x, g, [(0, i, i + 1) for i in range(n)], live_intervals=live)[1]
        for frac in (1.0, 0.6, 0.3):
            budget = int(store_all * frac)
            res = _C.plan_chain(f, b, x, g, budget, slots=37, live_intervals=live)
            if res is not None:
                assert res[3] <= budget
        p = plan_chain(f, b, x, g, 1.0, live_intervals=live)
        assert p.peak_bytes <= store_all  # (rounding up to slots may force recompute)


@pytest.mark.parametrize(
    "live, exc, word",
    [
        ([(0, 0, 1)], ValueError, "live_intervals[0]"),
        ([(0, 9, 1)], ValueError, "live_intervals[0]"),
        ([(0, 1, -1)], ValueError, "live_intervals[0]"),
        ([(0, 1)], TypeError, "live_intervals[0]"),
        ([(0, 1, 1.5)], TypeError, "live_intervals[0]"),
        (5, TypeError, "live_intervals"),
    ],
)
def test_bad_live_intervals(live, exc, word) -> None:
    f, b, x, g = [1.0, 1.0, 1.0], [2.0, 2.0, 2.0], [1, 1, 1], [1, 1, 1]
    with pytest.raises(exc, match=word.replace("[", r"\[").replace("]", r"\]")):
        _C.plan_chain(f, b, x, g, 100, live_intervals=live)
    with pytest.raises(exc, match=word.replace("[", r"\[").replace("]", r"\]")):
        plan_chain(f, b, x, g, 100, live_intervals=live)
    with pytest.raises(exc):
        _C.simulate(f, b, x, g, [(0, 0, 1), (0, 1, 2), (0, 2, 3)], live_intervals=live)
    with pytest.raises(exc):
        _C.min_budget(f, b, x, g, live_intervals=live)
