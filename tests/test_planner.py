"""The C planner and simulator against the Python reference, brute force and the API."""

from __future__ import annotations

import math
import random

import pytest

import tiny_backprop as tb
from tiny_backprop import _C
from tiny_backprop import _reference_planner as R
from tiny_backprop.errors import BudgetError
from tiny_backprop.plan import PLANNERS, decode_nodes, encode_tree, plan_chain, simulate_tree
from tiny_backprop.tree import Keep, Region, tree_stages


def _chain(rng: random.Random, n: int, integer_costs: bool = True):
    if integer_costs:
        f = [float(rng.randint(0, 5)) for _ in range(n)]
        b = [float(rng.randint(0, 9)) for _ in range(n)]
    else:
        f = [rng.random() * 3 for _ in range(n)]
        b = [rng.random() * 6 for _ in range(n)]
    x = [rng.randint(0, 7) for _ in range(n)]
    g = [rng.randint(0, 7) for _ in range(n)]
    return f, b, x, g


def test_c_matches_reference_on_random_chains() -> None:
    rng = random.Random(1234)
    for it in range(3000):
        n = rng.randint(1, 7)
        f, b, x, g = _chain(rng, n)
        mk = [rng.random() < 0.2 for _ in range(n)] if it % 3 == 0 else None
        budget = rng.randint(0, sum(x) + sum(g) + 2)
        ref_cost, _ = R.optimal(f, b, x, g, budget, mk)
        res = _C.plan_chain(f, b, x, g, budget, slots=512, must_keep=mk)
        mb = R.min_budget(x, g, mk)
        assert _C.min_budget(f, b, x, g, must_keep=mk)[0] == mb
        if res is None:
            assert ref_cost == math.inf and budget < mb
            continue
        nodes, planned, cost, peak = res
        assert planned == ref_cost  # integer costs: exact
        assert cost == planned and peak <= budget
        tree = decode_nodes(nodes)
        assert encode_tree(tree) == list(nodes)
        assert tree_stages(tree) == list(range(n))
        assert R.simulate(f, b, x, g, tree) == (cost, peak)
        if mk is not None:
            _assert_no_must_keep_in_region(tree, mk)


def _assert_no_must_keep_in_region(tree, mk) -> None:
    for node in tree:
        if isinstance(node, Region):
            assert not any(mk[node.start : node.end])
            _assert_no_must_keep_in_region(node.children, mk)


def test_float_costs_agree_within_rounding() -> None:
    rng = random.Random(7)
    for _ in range(500):
        n = rng.randint(1, 8)
        f, b, x, g = _chain(rng, n, integer_costs=False)
        budget = rng.randint(R.min_budget(x, g), sum(x) + sum(g) + 1)
        ref_cost, _ = R.optimal(f, b, x, g, budget)
        nodes, planned, cost, peak = _C.plan_chain(f, b, x, g, budget)
        assert planned == pytest.approx(ref_cost, rel=1e-12)
        assert cost == pytest.approx(planned, rel=1e-12) and peak <= budget


def test_brute_force_optimal_small_chains() -> None:
    rng = random.Random(99)
    trees = {n: R.all_trees(n) for n in range(1, 7)}
    assert len(trees[1]) == 2 and len(trees[6]) > 1000
    for it in range(40):
        n = 1 + it % 6
        f, b, x, g = _chain(rng, n)
        sims = [(R.simulate(f, b, x, g, t), t) for t in trees[n]]
        for budget in sorted({rng.randint(0, sum(x) + sum(g) + 2) for _ in range(6)}):
            feasible = [c for (c, p), _ in sims if p <= budget]
            res = _C.plan_chain(f, b, x, g, budget)
            if not feasible:
                assert res is None
                continue
            assert res is not None and res[1] == min(feasible)
        assert _C.min_budget(f, b, x, g)[0] == min(p for (_, p), _ in sims)


def test_c_simulator_matches_reference_on_all_trees() -> None:
    rng = random.Random(5)
    for n in range(1, 6):
        f, b, x, g = _chain(rng, n)
        for t in R.all_trees(n):
            assert simulate_tree(f, b, x, g, t) == R.simulate(f, b, x, g, t)


def test_cost_non_increasing_in_budget() -> None:
    rng = random.Random(3)
    for _ in range(30):
        n = rng.randint(2, 12)
        f, b, x, g = _chain(rng, n, integer_costs=False)
        lo = R.min_budget(x, g)
        hi = sum(x) + sum(g)
        last = math.inf
        for budget in range(lo, hi + 2):
            c = plan_chain(f, b, x, g, budget).total_cost
            assert c <= last + 1e-9
            last = c
        assert last == pytest.approx(sum(f) + sum(b))


def test_discretisation_never_exceeds_budget() -> None:
    rng = random.Random(11)
    for _ in range(200):
        n = rng.randint(1, 30)
        x = [rng.randint(0, 10**6) for _ in range(n)]
        g = [rng.randint(0, 10**6) for _ in range(n)]
        f = [rng.random() for _ in range(n)]
        b = [2 * v for v in f]
        budget = rng.randint(R.min_budget(x, g), sum(x) + sum(g))
        p = plan_chain(f, b, x, g, budget, slots=rng.choice([4, 32, 128]))
        assert p.peak_bytes <= budget
        assert p.total_cost == pytest.approx(p.planned_cost, rel=1e-9)


def test_auto_slots_are_fine_for_short_chains_and_bounded_for_long_ones() -> None:
    from tiny_backprop.plan import AUTO_SLOTS_WORK, MAX_AUTO_SLOTS, MIN_AUTO_SLOTS, auto_slots

    assert auto_slots(8) == MAX_AUTO_SLOTS and auto_slots(400) == MIN_AUTO_SLOTS
    for n in range(1, 200):
        s = auto_slots(n)
        assert s & (s - 1) == 0 and MIN_AUTO_SLOTS <= s <= MAX_AUTO_SLOTS
        assert s == MIN_AUTO_SLOTS or n * n * s <= AUTO_SLOTS_WORK
        assert s <= auto_slots(max(1, n - 1))


def test_default_slots_find_plans_that_fit_by_less_than_a_coarse_unit() -> None:
    # budgets under 8192 bytes: the default (8192 slots for 8 stages) is one byte per
    # unit, so the DP is exact; 512 slots round sizes up and sometimes miss the optimum
    rng = random.Random(5)
    worse = 0
    for _ in range(60):
        n = 8
        x = [rng.randint(100, 400) for _ in range(n)]
        g = [rng.randint(500, 900) for _ in range(n)]
        f = [float(rng.randint(1, 9)) for _ in range(n)]
        b = [2 * v for v in f]
        lo = R.min_budget(x, g)
        budget = rng.randint(lo, min(8191, lo + 1500))
        exact = _C.plan_chain(f, b, x, g, budget, slots=budget)
        p = plan_chain(f, b, x, g, budget)
        assert p.slots == 8192 and p.peak_bytes <= budget
        assert exact is not None and p.total_cost == pytest.approx(exact[2], rel=1e-12)
        coarse = plan_chain(f, b, x, g, budget, slots=512)
        assert coarse.total_cost >= p.total_cost - 1e-9
        worse += coarse.total_cost > p.total_cost + 1e-9
    assert worse > 0  # the case the default guards against does occur


def test_infeasible_budget_error_gives_exact_minimum() -> None:
    f, b, x, g = [1.0] * 4, [2.0] * 4, [10] * 4, [10] * 4
    with pytest.raises(BudgetError) as ei:
        plan_chain(f, b, x, g, 29)
    assert ei.value.minimum_bytes == 30 and ei.value.budget_bytes == 29
    assert "30" in str(ei.value)
    p = plan_chain(f, b, x, g, 30)
    assert p.peak_bytes == 30
    # Coarse slots: rounding makes the DP infeasible, the min-memory plan still fits.
    x2, g2 = [1001, 999, 1003, 997], [1001, 999, 1001, 999]
    mb = R.min_budget(x2, g2)
    p = plan_chain(f, b, x2, g2, mb, slots=3)
    assert p.peak_bytes <= mb
    with pytest.raises(BudgetError) as ei:
        plan_chain(f, b, x2, g2, mb - 1, slots=3)
    assert ei.value.minimum_bytes == mb


def test_baselines_report_peak_and_raise_over_budget() -> None:
    f, b, x, g = [1.0] * 9, [2.0] * 9, [10] * 9, [10] * 9
    store = plan_chain(f, b, x, g, 10**6, planner="store_all")
    assert store.recompute_cost == 0 and store.peak_bytes == 180
    per = plan_chain(f, b, x, g, 10**6, planner="per_stage")
    assert per.recompute_cost == 9 and all(isinstance(n, Region) for n in per.tree)
    sq = plan_chain(f, b, x, g, 10**6, planner="sqrt")
    assert sum(isinstance(n, Region) for n in sq.tree) == 2  # 3 segments, last kept
    tr = plan_chain(f, b, x, g, 10**6, planner="tree", height=1)
    assert isinstance(tr.tree[0], Region) and tr.tree[0].end == 4
    deep = plan_chain(f, b, x, g, 10**6, planner="tree")
    assert deep.peak_bytes < tr.peak_bytes < store.peak_bytes
    opt = plan_chain(f, b, x, g, per.peak_bytes)
    assert opt.total_cost <= per.total_cost
    with pytest.raises(BudgetError) as ei:
        plan_chain(f, b, x, g, 100, planner="store_all")
    assert ei.value.minimum_bytes == 180
    mk = [i == 4 for i in range(9)]
    for name in ("per_stage", "sqrt", "tree"):
        p = plan_chain(f, b, x, g, 10**6, planner=name, must_keep=mk)
        _assert_no_must_keep_in_region(p.tree, mk)


def test_plan_object_and_str() -> None:
    p = tb.plan_chain([1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [8, 8, 8], [16, 16, 16], "40B")
    assert isinstance(p, tb.Plan)
    assert p.num_stages == 3 and p.budget_bytes == 40 and p.planner == "optimal"
    assert p.peak_bytes <= 40 and p.predicted_peak_bytes == p.peak_bytes
    assert p.total_cost == 18.0 + p.recompute_cost and p.recompute_cost > 0
    assert p.plan_time_s >= 0 and p.chain is None
    s = str(p)
    assert s.splitlines()[0].startswith("Plan[optimal]: 3 stages")
    assert "predicted peak" in s and "recompute cost" in s and "Keep(2)" in s
    assert tree_stages(p.tree) == [0, 1, 2]
    assert Keep(2) in p.tree


@pytest.mark.parametrize(
    "kwargs, exc, word",
    [
        (dict(budget=True), TypeError, "bool"),
        (dict(budget=[1]), TypeError, "budget"),
        (dict(budget=-5), ValueError, "budget"),
        (dict(budget=1.5), ValueError, "(0, 1]"),
        (dict(budget=float("nan")), ValueError, "(0, 1]"),
        (dict(budget="lots"), ValueError, "lots"),
        (dict(planner="greedy"), ValueError, "optimal"),
        (dict(slots=0), ValueError, "slots"),
        (dict(slots=2.0), TypeError, "slots"),
        (dict(f=[1.0, -1.0]), ValueError, "forward_cost[1]"),
        (dict(b=[1.0, float("nan")]), ValueError, "backward_cost[1]"),
        (dict(x=[1, -3]), ValueError, "input_bytes[1]"),
        (dict(g=[1, 2.5]), TypeError, "saved_bytes[1]"),
        (dict(g=[1]), ValueError, "saved_bytes"),
        (dict(f=[], b=[], x=[], g=[]), ValueError, "empty"),
        (dict(f="ab"), TypeError, "forward_cost"),
        (dict(must_keep=[True]), ValueError, "must_keep"),
        (dict(height=-1, planner="tree"), ValueError, "height"),
    ],
)
def test_bad_arguments(kwargs, exc, word) -> None:
    args = dict(f=[1.0, 1.0], b=[2.0, 2.0], x=[4, 4], g=[4, 4], budget=100)
    args.update(kwargs)
    extra = {k: args.pop(k) for k in ("planner", "slots", "must_keep", "height") if k in args}
    with pytest.raises(exc) as ei:
        plan_chain(args["f"], args["b"], args["x"], args["g"], args["budget"], **extra)
    assert word in str(ei.value)


def test_c_glue_rejects_bad_input_without_crashing() -> None:
    with pytest.raises(TypeError):
        _C.plan_chain([1.0], [1.0], [1.5], [1], 10)
    with pytest.raises(ValueError):
        _C.plan_chain([1.0], [1.0], [1], [1], 10, planner="nope")
    with pytest.raises(ValueError):
        _C.plan_chain([1.0], [1.0], [1], [2**60], 10)
    with pytest.raises(ValueError):
        _C.simulate([1.0, 1.0], [1.0, 1.0], [1, 1], [1, 1], [(0, 0, 1)])
    with pytest.raises(ValueError):
        _C.simulate([1.0], [1.0], [1], [1], [(2, 0, 1)])
    with pytest.raises(TypeError):
        _C.simulate([1.0], [1.0], [1], [1], [(0, 0)])
    with pytest.raises(ValueError):
        _C.simulate([1.0], [1.0], [1], [1], [(1, 0, 1)] * 3)
    assert _C.PLANNERS == PLANNERS
