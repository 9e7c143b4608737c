"""Bad-input probe of the planner glue (issue #11, part 4): each bug class it found.

* lists mutated while being read (an element's __index__/__float__ clears the list):
  used to read freed or out-of-range items (segfaults); now every sequence is copied
  into a tuple first;
* huge costs whose sums overflow to inf: used to turn a feasible budget "infeasible";
  now the chain is rejected up front with a ValueError naming the bound;
* strerror truncating its code to the enum (2**32 + 2 read as 2);
* truthy non-bools (1, "no") accepted as flags;
* long plans: interruptible (Ctrl-C returns within about a second) and bounded
  (ValueError naming the limit instead of allocating tens of GiB).
"""

from __future__ import annotations

import gc
import math
import signal
import sys
import threading
import time

import pytest

from tiny_backprop import _C, BudgetError, plan_chain
from tiny_backprop.plan import simulate_tree
from tiny_backprop.tree import Keep

F = [1.0, 2.0, 3.0, 1.0]
B = [2.0, 2.0, 2.0, 2.0]
X = [10, 10, 10, 10]
G = [10, 10, 10, 10]
LIVE = [(0, 1, 10), (1, 2, 10), (2, 3, 10)]
NODES = [(0, i, i + 1) for i in range(4)]


# --------------------------------------------------------------- mutation while reading


class _Hostile:
    """A number whose conversion empties the list it sits in (and frees its items)."""

    def __init__(self, owner: list, value: float) -> None:
        self.owner = owner
        self.value = value

    def _strike(self) -> None:
        self.owner.clear()
        self.owner.extend(object() for _ in range(3))  # reuse the freed slots
        gc.collect()

    def __float__(self) -> float:
        self._strike()
        return float(self.value)

    def __index__(self) -> int:
        self._strike()
        return int(self.value)


class _HostileInt(int):
    """An int subclass whose __float__ clears its list (ints are accepted as costs)."""

    owner: list

    def __float__(self) -> float:
        self.owner.clear()
        gc.collect()
        return float(int(self))


def _hostile_list(values: list, i: int = 1) -> list:
    out = list(values)
    out[i] = _Hostile(out, values[i])
    return out


def _fields(**over: list) -> dict:
    d = dict(f=list(F), b=list(B), x=list(X), g=list(G))
    d.update(over)
    return d


HOSTILE_FIELDS = ["f", "b", "x", "g"]


@pytest.mark.parametrize("field", HOSTILE_FIELDS)
def test_mutating_sequence_chain(field: str) -> None:
    d = _fields()
    d[field] = _hostile_list(d[field])
    c = _C.Chain(d["f"], d["b"], d["x"], d["g"])  # read from our copy: no crash
    clean = _C.Chain(F, B, X, G)
    assert c.forward_cost == clean.forward_cost and c.saved_bytes == clean.saved_bytes
    assert _C.plan_chain(c, 60) == _C.plan_chain(clean, 60)


@pytest.mark.parametrize("field", HOSTILE_FIELDS)
@pytest.mark.parametrize("entry", ["plan_chain", "simulate", "min_budget"])
def test_mutating_sequence_legacy_calls(field: str, entry: str) -> None:
    d = _fields()
    d[field] = _hostile_list(d[field], i=2)
    args = (d["f"], d["b"], d["x"], d["g"])
    if entry == "plan_chain":
        got, want = _C.plan_chain(*args, 60), _C.plan_chain(F, B, X, G, 60)
    elif entry == "simulate":
        got, want = _C.simulate(*args, NODES), _C.simulate(F, B, X, G, NODES)
    else:
        got, want = _C.min_budget(*args), _C.min_budget(F, B, X, G)
    assert got == want


def _hostile_int_list(values: list, i: int = 1) -> list:
    out = list(values)
    h = _HostileInt(int(values[i]))
    h.owner = out
    out[i] = h
    return out


class _HostileBool:
    """A truthy object whose __bool__ clears its list (the old glue called it)."""

    def __init__(self, owner: list) -> None:
        self.owner = owner

    def __bool__(self) -> bool:
        self.owner.clear()
        gc.collect()
        return True


# The forms the old glue accepted and crashed on (read past a cleared list): an int
# cost with __float__, a truthy must_keep entry, a node with __index__; for each entry
# point.
@pytest.mark.parametrize("vector", ["forward_cost", "backward_cost", "must_keep"])
@pytest.mark.parametrize("entry", ["plan_chain", "simulate", "min_budget"])
def test_old_crash_vectors(vector: str, entry: str) -> None:
    f, b, mk = list(F), list(B), None
    if vector == "forward_cost":
        f = _hostile_int_list([1, 2, 3, 1], i=1)
    elif vector == "backward_cost":
        b = _hostile_int_list([2, 2, 2, 2], i=0)
    else:
        mk = [False, False, False, False]
        mk[0] = _HostileBool(mk)

    def call(mk_arg: object) -> object:
        if entry == "plan_chain":
            return _C.plan_chain(f, b, X, G, 60, must_keep=mk_arg)
        if entry == "simulate":
            return _C.simulate(f, b, X, G, NODES, must_keep=mk_arg)
        return _C.min_budget(f, b, X, G, must_keep=mk_arg)

    if mk is not None:
        with pytest.raises(TypeError, match=r"must_keep\[0\] must be a bool"):
            call(mk)
        return
    got = call(None)
    f, b = list(F), list(B)
    assert got == call(None)


def test_old_crash_vector_nodes() -> None:
    class HostileIndex:
        def __init__(self, owner: list, v: int) -> None:
            self.owner, self.v = owner, v

        def __index__(self) -> int:
            self.owner.clear()
            gc.collect()
            return self.v

    nodes: list = list(NODES)
    nodes[0] = (0, HostileIndex(nodes, 0), 1)
    assert _C.simulate(F, B, X, G, nodes) == _C.simulate(F, B, X, G, NODES)


# The Graph glue (py_graph.c) read its lists the same way: the same probe.
GN = 6
GRAPH = dict(
    output_bytes=[100 + v for v in range(GN)],
    saved_bytes=[v % 3 for v in range(GN)],
    cost=[float(v) for v in range(GN)],
    flags=[0] * GN,
    inputs=[[]] + [[v - 1] for v in range(1, GN)],
)


def _graph_summary(g: _C.Graph) -> tuple:
    return (g.topo_order(), g.frontier_bytes(), g.store_all_peak(), g.coarsen(3))


@pytest.mark.parametrize("field", ["output_bytes", "saved_bytes", "cost", "flags", "inputs",
                                   "inputs_row"])
def test_mutating_sequence_graph(field: str) -> None:
    d = {k: list(v) for k, v in GRAPH.items()}
    d["inputs"] = [list(r) for r in GRAPH["inputs"]]
    if field == "cost":
        d["cost"] = _hostile_int_list([int(c) for c in GRAPH["cost"]], i=2)
    elif field == "inputs":
        row = [_Hostile(d["inputs"], 1)]
        d["inputs"][2] = row  # clears the outer list
    elif field == "inputs_row":
        d["inputs"][3] = [_Hostile([], 2)]
        d["inputs"][3][0].owner = d["inputs"][3]  # clears its own row
    else:
        d[field] = _hostile_list(d[field], i=2)
    g = _C.Graph(d["output_bytes"], d["saved_bytes"], d["cost"], d["flags"], d["inputs"])
    assert _graph_summary(g) == _graph_summary(_C.Graph(**GRAPH))


def test_mutating_int_subclass_cost() -> None:
    f: list = list(F)
    h = _HostileInt(2)
    h.owner = f
    f[0] = h
    assert _C.Chain(f, B, X, G).forward_cost[0] == 2.0


def test_mutating_live_intervals_and_nodes() -> None:
    live: list = list(LIVE)
    live[1] = (1, 2, _Hostile(live, 10))
    c = _C.Chain(F, B, X, G, live_intervals=live)
    assert c.live_intervals == tuple(LIVE)
    nodes: list = list(NODES)
    nodes[1] = (0, _Hostile(nodes, 1), 2)
    assert _C.simulate(c, nodes) == _C.simulate(c, NODES)
    nodes = list(NODES)
    nodes[0] = (0, 0, _Hostile(nodes, 1))
    assert _C.simulate(F, B, X, G, nodes, live_intervals=LIVE) == _C.simulate(c, NODES)


def test_mutating_must_keep_is_rejected_not_read() -> None:
    mk: list = [False, False, False, False]
    mk[1] = _Hostile(mk, 1)  # not a bool: TypeError before any conversion
    with pytest.raises(TypeError, match=r"must_keep\[1\] must be a bool"):
        _C.Chain(F, B, X, G, must_keep=mk)


def test_mutating_working_bytes_and_cut_before() -> None:
    w = [0, 5, 0, 7]
    hostile = list(w)
    hostile[1] = _Hostile(hostile, 5)  # its __index__ empties the list being read
    c = _C.Chain(F, B, X, G, working_bytes=hostile)
    assert c.working_bytes == (0, 5, 0, 7)
    clean = _C.Chain(F, B, X, G, working_bytes=w)
    assert _C.plan_chain(c, 80) == _C.plan_chain(clean, 80)
    cut: list = [False, False, True, False]
    cut[1] = _Hostile(cut, 1)  # not a bool: TypeError before any conversion
    with pytest.raises(TypeError, match=r"cut_before\[1\] must be a bool"):
        _C.Chain(F, B, X, G, cut_before=cut)


def test_sequence_whose_len_lies() -> None:
    class Shrinking:
        def __init__(self) -> None:
            self.items = list(F)

        def __len__(self) -> int:
            return 10

        def __getitem__(self, i: int) -> float:
            if i >= len(self.items):
                raise IndexError(i)
            return self.items[i]

    c = _C.Chain(Shrinking(), B, X, G)
    assert len(c) == 4


# --------------------------------------------------------------- field / index messages


@pytest.mark.parametrize(
    "over, exc, pattern",
    [
        (dict(g=[1, 2, 3, -1]), ValueError, r"saved_bytes\[3\] must be an int >= 0"),
        (dict(g=[1, 2, 3, 1.5]), TypeError, r"saved_bytes\[3\] must be an int >= 0"),
        (dict(x=[1, True, 3, 4]), TypeError, r"input_bytes\[1\] must be an int"),
        (dict(x=[1, 2, 2**60, 4]), ValueError, r"input_bytes\[2\] must be at most 2\*\*52"),
        (dict(x=[1, 2, 2**100, 4]), ValueError, r"input_bytes\[2\]"),
        (dict(f=[1.0, "2", 3.0, 4.0]), TypeError, r"forward_cost\[1\] must be a number"),
        (dict(f=[1.0, 2.0, math.inf, 4.0]), ValueError, r"forward_cost\[2\] must be a finite"),
        (dict(b=[1.0, 2.0, 3.0, -0.5]), ValueError, r"backward_cost\[3\]"),
        (dict(b=[1.0, 2.0, 3.0, 10**400]), ValueError, r"backward_cost\[3\]"),
        (dict(b=[1.0, 2.0]), ValueError, r"backward_cost has 2 entries, expected 4"),
        (dict(f=[], b=[], x=[], g=[]), ValueError, r"forward_cost: the chain is empty"),
        (dict(f="abcd"), TypeError, r"forward_cost must be a sequence"),
        (dict(g=5), TypeError, r"saved_bytes must be a sequence"),
    ],
)
def test_chain_errors_name_field_and_index(over: dict, exc: type, pattern: str) -> None:
    d = _fields(**over)
    with pytest.raises(exc, match=pattern):
        _C.Chain(d["f"], d["b"], d["x"], d["g"])
    with pytest.raises(exc, match=pattern):  # the same parser behind the old form
        _C.plan_chain(d["f"], d["b"], d["x"], d["g"], 100)


def test_chain_is_immutable_and_typed() -> None:
    c = _C.Chain(F, B, X, G, must_keep=[True, False, False, True], live_intervals=LIVE)
    assert len(c) == c.num_stages == 4
    assert c.must_keep == (True, False, False, True)
    assert c.live_intervals == tuple(LIVE)
    assert "4 stages" in repr(c)
    with pytest.raises(AttributeError):
        c.forward_cost = (1.0,)  # type: ignore[misc]
    with pytest.raises(TypeError):
        type("Sub", (_C.Chain,), {})
    with pytest.raises(TypeError):
        _C.Chain(F, B, X, G, [True] * 4)  # must_keep is keyword-only
    with pytest.raises(TypeError, match="chain must be a tiny_backprop._C.Chain"):
        _C.plan_chain(chain=[1.0], budget=10)
    assert _C.Chain(F, B, X, G, live_intervals=[]).live_intervals is None


def test_chain_and_lists_agree() -> None:
    mk = [False, True, False, False]
    c = _C.Chain(F, B, X, G, must_keep=mk, live_intervals=LIVE)
    for budget in (45, 60, 100):
        for planner in _C.PLANNERS:
            assert _C.plan_chain(c, budget, planner=planner, transient=True) == _C.plan_chain(
                F, B, X, G, budget, planner=planner, must_keep=mk, live_intervals=LIVE,
                transient=True,
            )
    assert _C.min_budget(c) == _C.min_budget(F, B, X, G, must_keep=mk, live_intervals=LIVE)
    assert _C.simulate(c, NODES, transient=True) == _C.simulate(
        F, B, X, G, NODES, must_keep=mk, live_intervals=LIVE, transient=True
    )


# --------------------------------------------------------------- cost overflow


def test_overflowing_costs_are_rejected_not_infeasible() -> None:
    f, b = [1e308] * 4, [1e308] * 4  # each finite, sums inf
    with pytest.raises(ValueError, match="scale the costs down"):
        _C.Chain(f, b, X, G)
    with pytest.raises(ValueError, match="scale the costs down"):
        _C.plan_chain(f, b, X, G, 60)  # used to return None ("infeasible")
    with pytest.raises(ValueError, match="scale the costs down"):
        _C.min_budget(f, b, X, G)
    with pytest.raises(ValueError, match="scale the costs down"):
        plan_chain(f, b, X, G, 60)  # never a BudgetError


def test_huge_but_bounded_costs_still_plan() -> None:
    n = len(F)
    big = sys.float_info.max / 4 / (n + 1) / (2 * n) * 0.999  # sum just under the bound
    f, b = [big] * n, [big] * n
    c = _C.Chain(f, b, X, G)
    mb = _C.min_budget(c)[0]
    res = _C.plan_chain(c, mb, slots=mb)
    assert res is not None
    _, planned, cost, peak = res
    assert math.isfinite(planned) and math.isfinite(cost) and peak <= mb
    p = plan_chain(f, b, X, G, mb, slots=mb)
    assert math.isfinite(p.total_cost) and p.peak_bytes <= mb
    with pytest.raises(BudgetError):
        plan_chain(f, b, X, G, mb - 1, slots=mb)  # the real minimum still holds


# --------------------------------------------------------------- strerror


def test_strerror_every_code_full_message() -> None:
    expected = [
        "success",
        "out of memory",
        "invalid argument value",
        "index out of range",
        "graph has a cycle",
        "no schedule fits in the memory budget",
        "size overflow",
        "object used in the wrong state",
        "interrupted",
        "problem too large (over a documented size bound)",
    ]
    assert [_C.strerror(i) for i in range(len(expected))] == expected
    for code in (len(expected), -1, 2**31, 2**32 + 2, 2**64 + 1, -(2**63), 10**30):
        assert _C.strerror(code) == "unknown status", code
    for bad in (1.0, "2", None, True):
        with pytest.raises(TypeError):
            _C.strerror(bad)  # type: ignore[arg-type]


# --------------------------------------------------------------- flags


@pytest.mark.parametrize("bad", [1, 0, "yes", "", None, 1.0])
def test_must_keep_entries_must_be_bools(bad: object) -> None:
    mk = [False, bad, False, False]
    with pytest.raises(TypeError, match=r"must_keep\[1\] must be a bool"):
        _C.Chain(F, B, X, G, must_keep=mk)
    with pytest.raises(TypeError, match=r"must_keep\[1\] must be a bool"):
        _C.plan_chain(F, B, X, G, 100, must_keep=mk)
    with pytest.raises(TypeError, match=r"must_keep\[1\] must be a bool"):
        plan_chain(F, B, X, G, 100, must_keep=mk)


@pytest.mark.parametrize("bad", [1, 0, "no", 1.0, [True]])
def test_transient_must_be_a_bool(bad: object) -> None:
    c = _C.Chain(F, B, X, G)
    with pytest.raises(TypeError, match="transient must be a bool"):
        _C.plan_chain(c, 100, transient=bad)
    with pytest.raises(TypeError, match="transient must be a bool"):
        _C.plan_chain(F, B, X, G, 100, transient=bad)
    with pytest.raises(TypeError, match="transient must be a bool"):
        _C.min_budget(c, transient=bad)
    with pytest.raises(TypeError, match="transient must be a bool"):
        _C.simulate(F, B, X, G, NODES, transient=bad)
    with pytest.raises(TypeError, match="transient must be a bool"):
        plan_chain(F, B, X, G, 100, transient=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="transient must be a bool"):
        simulate_tree(F, B, X, G, [Keep(i) for i in range(4)], transient=bad)  # type: ignore[arg-type]


def test_real_bools_accepted() -> None:
    c = _C.Chain(F, B, X, G, must_keep=[True, False, False, True])
    assert _C.plan_chain(c, 100, transient=True) is not None
    assert _C.plan_chain(c, 100, transient=None) == _C.plan_chain(c, 100, transient=False)
    np = pytest.importorskip("numpy")
    p = plan_chain(F, B, X, G, 100, must_keep=list(np.array([True, False, False, True])))
    assert p.peak_bytes <= 100


# --------------------------------------------------------------- long plans


def _long_chain(n: int, big: bool = False) -> _C.Chain:
    f = [1.0 + (i % 7) for i in range(n)]
    b = [2.0] * n
    x = [(1 << 30) if big else 100 + (i % 5) for i in range(n)]
    g = [(1 << 30) if big else 50 + (i % 3) for i in range(n)]
    return _C.Chain(f, b, x, g)


def test_documented_bounds_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="TB_MAX_STAGES"):
        _C.Chain([1.0] * 100_001, [1.0] * 100_001, [1] * 100_001, [1] * 100_001)
    # 400 stages x 2**24 slots of 16384-slot sizes: tens of GiB of DP cells
    with pytest.raises(ValueError, match="TB_MAX_PLAN_BYTES"):
        _C.plan_chain(_long_chain(400, big=True), 1 << 40, slots=1 << 24)
    # 20,000 stages: the O(L^2) tables alone are over the bound
    c = _long_chain(20_000)
    with pytest.raises(ValueError, match="TB_MAX_PLAN_BYTES"):
        _C.min_budget(c)
    with pytest.raises(ValueError, match="TB_MAX_PLAN_BYTES"):
        _C.plan_chain(c, 10**9)
    with pytest.raises(ValueError, match=r"slots must be in \[1, 2\*\*24\]"):
        _C.plan_chain(c, 10**9, slots=(1 << 24) + 1)
    assert _C.plan_chain(c, 10**12, planner="sqrt") is not None  # baselines are O(L)


def _interrupt_during(call, delay: float = 0.3) -> float:
    """Runs call() while a thread sends SIGINT to the main thread after `delay` s;
    returns the seconds from the signal to the KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are only delivered to the main thread")
    sent: list[float] = []
    main = threading.main_thread().ident
    assert main is not None

    def fire() -> None:
        time.sleep(delay)
        sent.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    t = threading.Thread(target=fire)
    try:
        t.start()
        with pytest.raises(KeyboardInterrupt):
            call()
            time.sleep(5)  # (never reached when the call was interrupted)
        caught = time.monotonic()
    finally:
        t.join()
        signal.signal(signal.SIGINT, old)
    assert sent
    return caught - sent[0]


def test_ctrl_c_interrupts_a_long_optimal_plan() -> None:
    c = _long_chain(300)  # about 20 s uninterrupted on one core
    latency = _interrupt_during(lambda: _C.plan_chain(c, 5000, slots=4096))
    assert latency < 1.5, latency
    assert _C.plan_chain(_C.Chain(F, B, X, G), 60) is not None  # still usable


def test_ctrl_c_interrupts_a_long_min_budget() -> None:
    c = _long_chain(2000)  # about 10 s uninterrupted
    latency = _interrupt_during(lambda: _C.min_budget(c))
    assert latency < 1.5, latency
