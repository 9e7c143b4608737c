"""Level 1 options in the C chain DP: the C planner and simulator against the pure-Python
reference, and the reference against brute force over every tree and option choice."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import replace

import pytest

from tiny_backprop import _C
from tiny_backprop import _reference_planner as ref
from tiny_backprop.plan import decode_nodes, plan_chain
from tiny_backprop.tree import Region


def _case(rng: random.Random, n_max: int):
    n = rng.randint(2, n_max)
    f = [float(rng.randint(0, 9)) for _ in range(n)]
    b = [float(rng.randint(0, 9)) for _ in range(n)]
    x = [rng.randint(0, 5) for _ in range(n)]
    g = [rng.randint(0, 8) for _ in range(n)]
    opts = []
    for s in range(n):
        opts.append([])
        for _ in range(rng.randint(0, 3)):
            e = rng.randint(0, 6)
            # overlap: the part of the kept bytes the stage's saved bytes include
            opts[s].append((e, float(rng.randint(0, int(f[s]))), rng.randint(0, e)))
    return f, b, x, g, opts, rng.random() < 0.5, rng.randint(0, 40)


def _flat(opts):
    return [(s, e, r, v) for s in range(len(opts)) for (e, r, v) in opts[s]] or None


def test_c_matches_the_reference_with_options() -> None:
    rng = random.Random(0)
    used = 0
    for _ in range(400):
        f, b, x, g, opts, tr, budget = _case(rng, 6)
        want, tree = ref.optimal(f, b, x, g, budget, transient=tr, options=opts)
        chain = _C.Chain(f, b, x, g, options=_flat(opts))
        res = _C.plan_chain(chain, budget, slots=max(budget, 1), transient=tr)
        got = math.inf if res is None else res[1]
        assert got == want
        if res is None:
            continue
        t = decode_nodes(res[0])
        used += any(isinstance(nd, Region) and nd.option >= 0 for nd in t)
        cost, peak = _C.simulate(chain, res[0], transient=tr)
        assert (cost, peak) == pytest.approx(ref.simulate(f, b, x, g, t, transient=tr,
                                                          options=opts))
        assert cost == pytest.approx(got)
        assert peak <= budget
    assert used >= 10  # the options were really taken


def _with_options(tree, opts, n):
    spots = [i for i, nd in enumerate(tree)
             if isinstance(nd, Region) and nd.end == nd.start + 1 < n]
    for combo in itertools.product(*[range(-1, len(opts[tree[i].start])) for i in spots]):
        t = list(tree)
        for i, q in zip(spots, combo):
            t[i] = replace(t[i], option=q)
        yield tuple(t)


def test_reference_with_options_is_the_brute_force_optimum() -> None:
    rng = random.Random(1)
    for _ in range(120):
        f, b, x, g, opts, tr, budget = _case(rng, 5)
        n = len(f)
        best = math.inf
        for t0 in ref.all_trees(n):
            for t in _with_options(t0, opts, n):
                cost, peak = ref.simulate(f, b, x, g, t, transient=tr, options=opts)
                if peak <= budget:
                    best = min(best, cost)
        want, _ = ref.optimal(f, b, x, g, budget, transient=tr, options=opts)
        assert want == pytest.approx(best) or (want == best == math.inf)


def test_plan_chain_options_lower_the_cost_and_stay_in_budget() -> None:
    f, b, x, g = [1.0, 10.0, 1.0], [1.0, 1.0, 1.0], [1, 1, 1], [1, 10, 1]
    plain = plan_chain(f, b, x, g, 13, slots=13)
    with_opt = plan_chain(f, b, x, g, 13, slots=13, options=[(1, 1, 8.0)])
    assert plain.total_cost == 25.0 and with_opt.total_cost == 18.0
    assert with_opt.peak_bytes <= 13
    assert any(isinstance(nd, Region) and nd.option == 0 for nd in with_opt.tree)


def test_overlap_lets_an_option_fit_a_smaller_budget() -> None:
    """Kept bytes that become the stage's saved tensors are not held twice during its
    recomputation: at budget 13 the 4-byte option of stage 1 fits only with overlap 4."""
    f, b, x, g = [1.0, 10.0, 1.0], [1.0, 1.0, 1.0], [1, 1, 1], [1, 10, 1]
    got = {}
    for v in (0, 4):
        p = plan_chain(f, b, x, g, 13, slots=13, options=[(1, 4, 8.0, v)])
        assert p.peak_bytes <= 13
        assert (p.total_cost, p.peak_bytes) == ref.simulate(
            f, b, x, g, p.tree, options=[[], [(4, 8.0, v)], []])
        got[v] = (p.total_cost, any(isinstance(nd, Region) and nd.option == 0
                                    for nd in p.tree))
    assert got == {0: (25.0, False), 4: (17.0, True)}


@pytest.mark.parametrize("options, err, match", [
    ([(3, 1, 1.0)], ValueError, r"options\[0\]: stage must be < 3"),
    ([(1, 1, 11.0)], ValueError, r"save must be <= forward_cost\[stage\]"),
    ([(1, -1, 1.0)], ValueError, r"options\[0\]\[1\] must be an int >= 0"),
    ([(1, 1)], TypeError, r"options\[0\] must be a \(stage, bytes, save\) or"),
    ([(1, 1, 1.0, 2)], ValueError, r"options\[0\]: overlap must be <= bytes"),
    ([(1, 1, 1.0, -1)], ValueError, r"options\[0\]\[3\] must be an int >= 0"),
    ([(True, 1, 1.0)], TypeError, r"options\[0\]\[0\] must be an int"),
    ("abc", TypeError, "options must be a sequence"),
])
def test_bad_options_name_the_entry(options, err, match) -> None:
    with pytest.raises(err, match=match):
        _C.Chain([1.0, 10.0, 1.0], [1.0] * 3, [1] * 3, [1, 10, 1], options=options)


def test_options_are_grouped_by_stage_in_the_order_given() -> None:
    c = _C.Chain([5.0, 5.0, 5.0], [1.0] * 3, [1] * 3, [1] * 3,
                 options=[(1, 4, 2.0), (0, 3, 1.0), (1, 2, 1.0)])
    assert c.options == ((0, 3, 1.0, 0), (1, 4, 2.0, 0), (1, 2, 1.0, 0))
    assert _C.Chain([1.0], [1.0], [1], [1]).options is None


def test_simulate_rejects_options_where_they_do_not_apply() -> None:
    c = _C.Chain([1.0, 10.0, 1.0], [1.0] * 3, [1] * 3, [1, 10, 1], options=[(1, 1, 8.0)])
    with pytest.raises(ValueError, match="not a plan tree"):  # option 1 does not exist
        _C.simulate(c, [(0, 0, 1), (1, 1, 2, 1), (0, 1, 2), (0, 2, 3)])
    with pytest.raises(ValueError, match="not a plan tree"):  # nested, not top level
        _C.simulate(c, [(1, 0, 3), (0, 0, 1), (1, 1, 2, 0), (0, 1, 2), (0, 2, 3)])
    with pytest.raises(ValueError, match="belongs to a Region"):
        _C.simulate(c, [(0, 0, 1), (0, 1, 2, 0), (0, 2, 3)])
