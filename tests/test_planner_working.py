"""Working bytes (a stage's backward needs w[s] beyond its saved bytes) and cut
boundaries (no region spans them) in the C planner, min_budget and simulator: against
the pure-Python reference, and the reference against brute force over every tree and
option choice."""

from __future__ import annotations

import math
import random

import pytest

from tests.test_planner_options import _case as _options_case
from tests.test_planner_options import _flat, _with_options
from tiny_backprop import _C
from tiny_backprop import _reference_planner as ref
from tiny_backprop.errors import BudgetError
from tiny_backprop.plan import decode_nodes, encode_tree, plan_chain, simulate_tree
from tiny_backprop.tree import Keep, Region


def _case(rng: random.Random, n_max: int):
    """`test_planner_options._case` plus working bytes, sometimes live intervals and
    sometimes cuts; budgets up to 50 (the working bytes raise the peaks)."""
    f, b, x, g, opts, tr, _ = _options_case(rng, n_max)
    n = len(f)
    w = [rng.choice((0, 0, rng.randint(0, 12))) for _ in range(n)]
    live = None
    if rng.random() < 0.3:
        live = [(j, rng.randint(j + 1, n - 1), rng.randint(0, 5))
                for j in range(n - 1) for _ in range(rng.randint(0, 2))]
    cut = [rng.random() < 0.25 for _ in range(n)] if rng.random() < 0.5 else None
    return f, b, x, g, w, opts, live, cut, tr, rng.randint(0, 50)


def _crosses(tree, cut) -> bool:
    """Some region of the tree spans a cut boundary."""
    if cut is None:
        return False
    for nd in tree:
        if isinstance(nd, Region):
            if any(cut[nd.start + 1:nd.end]) or _crosses(nd.children, cut):
                return True
    return False


def test_c_matches_the_reference_with_working_bytes() -> None:
    rng = random.Random(3)
    bound = 0
    for _ in range(400):
        f, b, x, g, w, opts, live, cut, tr, budget = _case(rng, 6)
        want, _ = ref.optimal(f, b, x, g, budget, live=live, transient=tr, options=opts,
                              working=w, cut=cut)
        chain = _C.Chain(f, b, x, g, live_intervals=live, options=_flat(opts),
                         working_bytes=w, cut_before=cut)
        res = _C.plan_chain(chain, budget, slots=max(budget, 1), transient=tr)
        got = math.inf if res is None else res[1]
        assert got == want
        plain, _ = ref.optimal(f, b, x, g, budget, live=live, transient=tr, options=opts,
                               cut=cut)
        bound += want != plain  # the working bytes changed the optimum
        low = ref.min_budget(x, g, live=live, transient=tr, working=w, cut=cut)
        assert _C.min_budget(chain, transient=tr)[0] == low
        if res is None:
            continue
        t = decode_nodes(res[0])
        assert not _crosses(t, cut)
        cost, peak = _C.simulate(chain, res[0], transient=tr)
        assert (cost, peak) == pytest.approx(ref.simulate(
            f, b, x, g, t, live=live, transient=tr, options=opts, working=w))
        assert peak <= budget
        coarse = _C.plan_chain(chain, budget, slots=7, transient=tr)  # sizes round up
        if coarse is not None:
            assert coarse[3] <= budget and coarse[1] >= want
    assert bound >= 40  # the term really binds in these cases


def test_reference_with_working_bytes_is_the_brute_force_optimum() -> None:
    rng = random.Random(4)
    for _ in range(120):
        f, b, x, g, w, opts, live, cut, tr, budget = _case(rng, 5)
        n = len(f)
        best, lowest = math.inf, math.inf
        for t0 in ref.all_trees(n):
            if _crosses(t0, cut):
                continue
            for t in _with_options(t0, opts, n):
                cost, peak = ref.simulate(f, b, x, g, t, live=live, transient=tr,
                                          options=opts, working=w)
                if peak <= budget:
                    best = min(best, cost)
            lowest = min(lowest, ref.simulate(f, b, x, g, t0, live=live, transient=tr,
                                              working=w)[1])
        want, _ = ref.optimal(f, b, x, g, budget, live=live, transient=tr, options=opts,
                              working=w, cut=cut)
        assert want == pytest.approx(best) or (want == best == math.inf)
        assert ref.min_budget(x, g, live=live, transient=tr, working=w, cut=cut) == lowest


def test_c_simulator_adds_working_bytes_on_every_tree() -> None:
    f, b, x, g, w = [1.0] * 4, [2.0] * 4, [1, 2, 3, 1], [4, 1, 5, 2], [3, 9, 0, 6]
    chain = _C.Chain(f, b, x, g, working_bytes=w)
    for t in ref.all_trees(4):
        for tr in (False, True):
            got = _C.simulate(chain, encode_tree(t), transient=tr)
            assert got == pytest.approx(ref.simulate(f, b, x, g, t, transient=tr, working=w))


def test_working_bytes_of_a_stage_raise_the_peak_at_its_backward() -> None:
    # store-all: the last stage's backward holds everything before it and its w
    f, b, x, g = [1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [1, 1, 1], [4, 4, 4]
    tree = (Keep(0), Keep(1), Keep(2))
    assert simulate_tree(f, b, x, g, tree)[1] == 15
    assert simulate_tree(f, b, x, g, tree, working_bytes=[0, 0, 7])[1] == 22
    # stage 0's backward runs last, when only x0 and g0 are held: 1 + 4 + 9
    assert simulate_tree(f, b, x, g, tree, working_bytes=[9, 0, 0])[1] == 15
    assert simulate_tree(f, b, x, g, tree, working_bytes=[12, 0, 0])[1] == 17
    # a recomputed stage: its backward holds x0, the region's saved bytes and w
    regions = (Keep(0), Region(1, 2, (Keep(1),)), Keep(2))
    assert simulate_tree(f, b, x, g, regions, working_bytes=[0, 20, 0])[1] == 1 + 4 + 1 + 4 + 20


def test_plan_chain_counts_working_bytes_and_reports_the_held_peak() -> None:
    f, b, x, g = [1.0] * 4, [2.0] * 4, [1, 1, 1, 1], [4, 4, 4, 4]
    w = [0, 0, 0, 10]
    p = plan_chain(f, b, x, g, 1.0, working_bytes=w)
    # store-all: x0 + g0..g2 + x1..x3 + g3 + w3
    assert p.peak_bytes == 1 + 12 + 3 + 4 + 10
    assert p.held_peak_bytes == 1 + 12 + 3 + 4
    q = plan_chain(f, b, x, g, 1.0)
    assert q.held_peak_bytes == q.peak_bytes == 20
    low = ref.min_budget(x, g, working=w)
    with pytest.raises(BudgetError) as e:
        plan_chain(f, b, x, g, low - 1, working_bytes=w)
    assert e.value.minimum_bytes == low
    p = plan_chain(f, b, x, g, low, working_bytes=w)
    assert p.peak_bytes <= low and p.held_peak_bytes <= p.peak_bytes


@pytest.mark.parametrize("working, err, match", [
    ([0, 1], ValueError, "working_bytes has 2 entries"),
    ([0, -1, 0], ValueError, r"working_bytes\[1\] must be >= 0"),
    ([0, 1.5, 0], TypeError, r"working_bytes\[1\] must be an int"),
    ([True, 0, 0], TypeError, r"working_bytes\[0\] must be an int"),
    ("abc", TypeError, "working_bytes must be a sequence"),
])
def test_bad_working_bytes_name_the_entry(working, err, match) -> None:
    with pytest.raises(err, match=match):
        plan_chain([1.0] * 3, [1.0] * 3, [1] * 3, [1] * 3, 1.0, working_bytes=working)


@pytest.mark.parametrize("working, err, match", [
    ([0, 1], ValueError, "working_bytes has 2 entries"),
    ([0, -1, 0], ValueError, r"working_bytes\[1\]"),
    ([0, 2**60, 0], ValueError, r"working_bytes\[1\]"),
    ([0, None, 0], TypeError, r"working_bytes\[1\]"),
])
def test_c_chain_rejects_bad_working_bytes(working, err, match) -> None:
    with pytest.raises(err, match=match):
        _C.Chain([1.0] * 3, [1.0] * 3, [1] * 3, [1] * 3, working_bytes=working)


def test_c_chain_copies_working_bytes_under_mutation() -> None:
    class Grows(list):
        def __getitem__(self, i):  # a list that changes while it is read
            self.append(1)
            return super().__getitem__(i)

    c = _C.Chain([1.0] * 3, [1.0] * 3, [1] * 3, [1] * 3, working_bytes=Grows([1, 2, 3]))
    assert c.working_bytes == (1, 2, 3)
    assert _C.Chain([1.0], [1.0], [1], [1]).working_bytes is None


def test_cut_boundaries_bound_every_planner() -> None:
    n = 8
    f, b, x, g = [1.0] * n, [2.0] * n, [1] * n, [4] * n
    cut = [False, False, False, True, False, False, True, False]
    chain = _C.Chain(f, b, x, g, cut_before=cut)
    assert chain.cut_before == tuple(cut)
    # a region over stages 2..3 spans boundary 3: the simulator refuses it
    with pytest.raises(ValueError):
        _C.simulate(chain, encode_tree((Keep(0), Keep(1), Region(2, 4, (Keep(2), Keep(3))),
                                        Keep(4), Keep(5), Keep(6), Keep(7))))
    for planner in ("optimal", "per_stage", "sqrt", "tree"):
        for budget in (0.3, 0.5, 1.0):
            try:
                p = plan_chain(f, b, x, g, budget, planner=planner, cut_before=cut)
            except BudgetError:
                continue
            assert not _crosses(p.tree, cut), (planner, budget, p.tree)
    # without the cuts the optimum at the minimum spans them
    low = plan_chain(f, b, x, g, ref.min_budget(x, g))
    assert _crosses(low.tree, cut)
    assert ref.min_budget(x, g, cut=cut) > ref.min_budget(x, g)
    with pytest.raises(ValueError, match="cut_before has 2 entries"):
        plan_chain(f, b, x, g, 1.0, cut_before=[False, True])
    with pytest.raises(TypeError, match=r"cut_before\[1\] must be a bool"):
        plan_chain(f, b, x, g, 1.0, cut_before=[False, 1] + [False] * 6)
    with pytest.raises(TypeError, match=r"cut_before\[1\] must be a bool"):
        _C.Chain(f, b, x, g, cut_before=[False, 1] + [False] * 6)
