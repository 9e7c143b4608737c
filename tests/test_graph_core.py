"""The C graph analysis (tiny_backprop._C.Graph) against the pure-Python reference."""

from __future__ import annotations

import copy
import math
import random

import pytest

from tiny_backprop import _C
from tiny_backprop._reference import RefGraph
from tiny_backprop.chain import analyze_graph, stage_chain
from tiny_backprop.ir import (
    FLAG_ALIAS,
    FLAG_INPUT,
    FLAG_NEVER_RECOMPUTE,
    FLAG_OUTPUT,
    FLAG_OUTPUT_SAVED,
    FLAG_PARAM,
    GraphIR,
    NodeInfo,
)


def random_graph(rng: random.Random, n_max: int = 24, p_saved: float = 0.4) -> dict[str, list]:
    """A random DAG with random flags; node ids are sometimes shuffled (not topological)."""
    n = rng.randint(0, n_max)
    zero_costs = rng.random() < 0.2
    inputs: list[list[int]] = []
    flags: list[int] = []
    for v in range(n):
        if v == 0 or rng.random() < 0.15:
            ins: list[int] = []
            f = rng.choice([FLAG_INPUT, FLAG_PARAM, FLAG_INPUT | FLAG_OUTPUT_SAVED])
        else:
            k = rng.randint(1, min(3, v))
            ins = [rng.randrange(v) for _ in range(k)]
            if rng.random() < 0.3:
                ins.append(max(0, v - 1))  # chains with skips
            f = 0
            for bit, prob in (
                (FLAG_ALIAS, 0.2),
                (FLAG_OUTPUT_SAVED, p_saved),
                (FLAG_OUTPUT, 0.1),
                (FLAG_NEVER_RECOMPUTE, 0.05),
                (FLAG_PARAM, 0.05),
            ):
                if rng.random() < prob:
                    f |= bit
        inputs.append(ins)
        flags.append(f)
    if n and rng.random() < 0.3:
        perm = list(range(n))
        rng.shuffle(perm)  # old id v becomes perm[v]
        new_inputs: list[list[int]] = [[] for _ in range(n)]
        new_flags = [0] * n
        for v in range(n):
            new_inputs[perm[v]] = [perm[u] for u in inputs[v]]
            new_flags[perm[v]] = flags[v]
        inputs, flags = new_inputs, new_flags
    return {
        "output_bytes": [rng.choice([0, 4, 64, rng.randint(0, 10**6)]) for _ in range(n)],
        "saved_bytes": [rng.choice([0, 0, 8, rng.randint(0, 10**4)]) for _ in range(n)],
        "cost": [
            0.0 if zero_costs else rng.choice([0.0, 1.0, rng.random() * 1e6]) for _ in range(n)
        ],
        "flags": flags,
        "inputs": inputs,
    }


def make(a: dict[str, list]) -> _C.Graph:
    return _C.Graph(a["output_bytes"], a["saved_bytes"], a["cost"], a["flags"], a["inputs"])


@pytest.mark.parametrize("n_max,p_saved,count", [(24, 0.4, 300), (160, 0.7, 25)])
def test_c_matches_reference_on_random_dags(n_max: int, p_saved: float, count: int):
    # the large graphs exercise the clean-cut fallback (more than TB_COARSEN_SPAN
    # allowed positions without a clean cut)
    rng = random.Random(1234 + n_max)
    checked_kahn = 0
    for _ in range(count):
        a = random_graph(rng, n_max, p_saved)
        before = copy.deepcopy(a)
        g = make(a)
        ref = RefGraph(**a)
        assert a == before  # the caller's sequences are never modified
        n = len(a["flags"])
        assert g.num_nodes == n
        assert g.topo_order() == ref.order
        checked_kahn += ref.order != list(range(n))
        assert g.frontier_bytes() == ref.frontier_bytes()
        assert g.store_all_peak() == ref.store_all_peak()
        assert g.lower_bound() == ref.lower_bound()
        assert g.lower_bound() <= g.store_all_peak()
        for m in sorted({1, 2, 3, max(1, n // 3), max(1, n - 1), n + 5}):
            stages = g.coarsen(m)
            assert stages == ref.coarsen(m), (a, m)
            assert len(stages) <= m
            st2, iv = g.coarsen_chain(m)
            assert st2 == stages and iv == ref.live_intervals(stages)
            # x_i (i >= 1) = graph inputs live at stage i + the intervals crossing it
            inputs_at = [s[4] - sum(b for j, u, b in iv if j < i <= u) for i, s in enumerate(stages)]
            assert all(v >= 0 for v in inputs_at)
            assert all(inputs_at[i] <= stages[0][4] for i in range(len(stages)))
            if n:
                assert stages[0][0] == 0 and stages[-1][1] == n
                assert all(s[1] == t[0] for s, t in zip(stages, stages[1:]))
                assert all(s[0] < s[1] for s in stages)
                assert math.isclose(sum(s[2] for s in stages), sum(a["cost"]), rel_tol=1e-9)
    assert checked_kahn > count // 15  # the non-topological path was exercised


def test_one_stage_per_nontrivial_node_and_balance():
    n = 200
    a = {
        "output_bytes": [100] * n,
        "saved_bytes": [0] * n,
        "cost": [1.0] * n,
        "flags": [FLAG_INPUT, FLAG_PARAM] + [FLAG_OUTPUT_SAVED] * (n - 2),
        "inputs": [[], []] + [[v - 1, 1] for v in range(2, n)],
    }
    g = make(a)
    assert len(g.coarsen(10_000)) == n - 2  # input + param join the first stage
    assert g.coarsen(10_000)[0][:2] == (0, 3)
    four = g.coarsen(4)
    assert len(four) == 4
    assert all(40 <= s[2] <= 60 for s in four)  # balanced: 200 / 4 each, +- half a stage
    # nothing saved: no cut is clean, so one fallback cut per TB_COARSEN_SPAN positions
    # (equal over-counts: the latest of each scan)
    a["flags"] = [FLAG_INPUT, FLAG_PARAM] + [0] * (n - 2)
    stages = make(a).coarsen(10_000)
    assert [s[0] for s in stages] == [0, 34, 66, 98, 130, 162, 194]
    assert stages == RefGraph(**a).coarsen(10_000)


def test_clean_cuts_skip_unsaved_views_and_free_ops():
    # 0 INPUT; 1 mm(0) saved; 2 view(1) ALIAS; 3 scale(2) (unsaved: 4 saves its output);
    # 4 softmax(3) saved; 5 free(4) cost 0, saved; 6 mm(5) OUTPUT
    flags = [FLAG_INPUT, FLAG_OUTPUT_SAVED, FLAG_ALIAS, 0, FLAG_OUTPUT_SAVED,
             FLAG_OUTPUT_SAVED, FLAG_OUTPUT]
    cost = [0.0, 10.0, 0.0, 1.0, 1.0, 0.0, 10.0]
    ins = [[], [0], [1], [2], [3], [4], [5]]
    a = {"output_bytes": [8] * 7, "saved_bytes": [0] * 7, "cost": cost, "flags": flags,
         "inputs": ins}
    stages = make(a).coarsen(100)
    # no cut after 2 (ALIAS) or 5 (cost 0); none after 3 (its output is not saved)
    assert [s[0] for s in stages] == [0, 2, 5]
    assert stages == RefGraph(**a).coarsen(100)


def test_coarsen_prefers_small_frontier():
    # a chain of 10 nodes whose outputs are big except at node 4 (between 0..4 and 5..9)
    n = 10
    out = [1000] * n
    out[4] = 1
    flags = [FLAG_OUTPUT_SAVED] * n  # every cut is clean
    g = _C.Graph(out, [0] * n, [1.0] * n, flags, [[]] + [[v - 1] for v in range(1, n)])
    stages = g.coarsen(2)
    assert stages[1][0] == 5 and stages[1][4] == 1


def test_error_messages():
    ok = ([1, 2, 3], [0, 0, 0], [1.0, 1.0, 1.0], [0, 0, 0], [[], [0], [1]])

    def with_(i: int, value):
        args = list(copy.deepcopy(ok))
        args[i] = value
        return args

    cases = [
        (with_(0, [1, -5, 3]), ValueError, r"output_bytes\[1\] must be >= 0, got -5"),
        (with_(1, [0, 0, 2**64]), ValueError, r"saved_bytes\[2\] is too large"),
        (
            with_(0, [1, 2.5, 3]),
            TypeError,
            r"output_bytes\[1\] must be an int \(bytes\), got float",
        ),
        (
            with_(2, [1.0, float("nan"), 1.0]),
            ValueError,
            r"cost\[1\] must be finite and >= 0, got nan",
        ),
        (with_(2, [1.0, -1.0, 1.0]), ValueError, r"cost\[1\] must be finite and >= 0"),
        (with_(2, [1.0, "x", 1.0]), TypeError, r"cost\[1\] must be a float or int, got str"),
        (with_(3, [0, 999, 0]), ValueError, r"flags\[1\] has unknown bits"),
        (
            with_(4, [[], [9], [1]]),
            ValueError,
            r"inputs\[1\] has node id 9 but there are only 3 nodes \(ids 0\.\.2\)",
        ),
        (with_(4, [[], [-1], [1]]), ValueError, r"inputs\[1\] has node id -1"),
        (with_(4, [[], [1], [1]]), ValueError, r"inputs\[1\] lists node 1 itself"),
        (with_(4, [[2], [0], [1]]), ValueError, r"cycle"),
        (with_(4, [[], 0, [1]]), TypeError, r"inputs\[1\] must be a sequence of node ids"),
        (with_(4, [[], ["a"], [1]]), TypeError, r"inputs\[1\]\[0\] must be an int node id"),
        (with_(1, [0, 0]), ValueError, r"saved_bytes has 2 entries but output_bytes has 3"),
        (with_(0, 5), TypeError, r"output_bytes must be a sequence"),
        (with_(0, [2**62, 2**62, 2**62]), ValueError, r"more than 2\*\*63 - 1 bytes"),
    ]
    for args, exc, pattern in cases:
        with pytest.raises(exc, match=pattern):
            _C.Graph(*args)
    g = _C.Graph(*ok)
    with pytest.raises(ValueError, match="max_stages must be >= 1, got 0"):
        g.coarsen(0)
    with pytest.raises(TypeError, match="max_stages must be an int"):
        g.coarsen(2.0)


def test_tuples_and_generators_accepted_and_empty_graph():
    g = _C.Graph((1, 2), (0, 0), (0, 1), (FLAG_INPUT, 0), ((), (0,)))
    assert g.frontier_bytes() == [1, 0]
    e = _C.Graph([], [], [], [], [])
    assert e.num_nodes == 0 and e.coarsen(3) == [] and e.store_all_peak() == 0


def _ir() -> GraphIR:
    def node(i, ins, out, flags, cost=1.0, saved=0):
        return NodeInfo(f"n{i}", "call_function", "t", tuple(ins), out, saved, cost, flags)

    return GraphIR(
        [
            node(0, [], 100, FLAG_INPUT, 0.0),
            node(1, [0], 200, FLAG_OUTPUT_SAVED),
            node(2, [1], 300, FLAG_OUTPUT_SAVED | FLAG_NEVER_RECOMPUTE, 2.0, 50),
            node(3, [2], 4, FLAG_OUTPUT, 3.0),
        ]
    )


def test_chain_api():
    an = analyze_graph(_ir())
    assert an.topo_order == [0, 1, 2, 3]
    assert an.frontier_bytes == [100, 200, 300, 4]
    assert an.store_all_peak == 554 and an.lower_bound == 554
    ch = stage_chain(_ir())
    assert ch.bounds == [(0, 2), (2, 3), (3, 4)]
    assert ch.input_bytes == [100, 200, 300]
    assert ch.saved_bytes == [0, 50, 0]
    assert ch.never_recompute == [False, True, False]
    assert ch.backward_cost == [2.0, 4.0, 6.0]
    assert len(stage_chain(_ir(), 1)) == 1
    with pytest.raises(ValueError, match="max_stages must be >= 1, got 0"):
        stage_chain(_ir(), 0)
    with pytest.raises(TypeError, match="ir must be a tiny_backprop.ir.GraphIR"):
        analyze_graph([1, 2])  # type: ignore[arg-type]


def test_ten_thousand_nodes_coarsen():
    rng = random.Random(7)
    n = 10_000
    ins = [[]] + [[v - 1] + ([rng.randrange(v)] if rng.random() < 0.3 else []) for v in range(1, n)]
    out = [rng.randint(1, 10**6) for _ in range(n)]
    g = _C.Graph(out, [0] * n, [1.0] * n, [FLAG_OUTPUT_SAVED] * n, ins)
    for m in (1, 64, 512, n):
        stages = g.coarsen(m)
        assert len(stages) == min(m, n)
    unsaved = _C.Graph(out, [0] * n, [1.0] * n, [0] * n, ins)  # every cut is a fallback
    assert len(unsaved.coarsen(n)) > n // 40
