"""The Chain / planner glue must not leak: 10,000 calls of every entry point, error paths
too (same style as test_graph_leaks.py)."""

from __future__ import annotations

import gc
import os
import sys

import psutil
import pytest

from tiny_backprop import _C

N = 12
F = [1.0 + (i % 3) for i in range(N)]
B = [2.0] * N
X = [16 + (i % 4) for i in range(N)]
G = [8 * (1 + i % 2) for i in range(N)]
MK = [i == 0 for i in range(N)]
LIVE = [(i, i + 1, 16) for i in range(N - 1)] + [(0, N - 1, 4)]
NODES = [(0, i, i + 1) for i in range(N)]
BAD_CHAINS = [
    ([1.0, -1.0], [1.0, 1.0], [1, 1], [1, 1], {}),
    ([1.0, 1.0], [1.0, 1.0], [1, 1.5], [1, 1], {}),
    ([1.0, 1.0], [1.0], [1, 1], [1, 1], {}),
    ([1.0, 1.0], [1.0, 1.0], [1, 1], [1, 1], {"must_keep": [1, 0]}),
    ([1.0, 1.0], [1.0, 1.0], [1, 1], [1, 1], {"live_intervals": [(1, 0, 1)]}),
    ([1.0, 1.0], [1.0, 1.0], [1, 1], [1, 1], {"live_intervals": [(0, 1, "x")]}),
    ([1e308, 1e308], [1e308, 1.0], [1, 1], [1, 1], {}),
    ("ab", [1.0, 1.0], [1, 1], [1, 1], {}),
]


def one_round(i: int) -> None:
    c = _C.Chain(F, B, X, G, must_keep=MK, live_intervals=LIVE)
    _C.plan_chain(c, 150, slots=64, transient=bool(i % 2))
    _C.plan_chain(c, 150, planner=_C.PLANNERS[i % len(_C.PLANNERS)])
    _C.plan_chain(c, 1)  # infeasible: None
    _C.min_budget(c, transient=True)
    _C.simulate(c, NODES)
    _C.plan_chain(F, B, X, G, 150, slots=64, must_keep=MK, live_intervals=LIVE)
    _C.min_budget(F, B, X, G)
    _C.simulate(F, B, X, G, NODES, live_intervals=LIVE)
    (c.forward_cost, c.backward_cost, c.input_bytes, c.saved_bytes, c.must_keep,
     c.live_intervals, len(c), repr(c))
    _C.strerror(i % 12)
    f, b, x, g, kw = BAD_CHAINS[i % len(BAD_CHAINS)]
    for call in (
        lambda: _C.Chain(f, b, x, g, **kw),
        lambda: _C.plan_chain(f, b, x, g, 100, **kw),
        lambda: _C.simulate(f, b, x, g, NODES[:2], **kw),
        lambda: _C.min_budget(f, b, x, g, **kw),
        lambda: _C.simulate(c, [(0, 0, 2)] if i % 2 else [(0, 0)]),
        lambda: _C.plan_chain(c, 100, transient=1),
        lambda: _C.plan_chain(c, 100, planner="nope"),
        lambda: _C.plan_chain(chain=F, budget=100),
    ):
        try:
            call()
        except (TypeError, ValueError):
            pass


@pytest.mark.slow
def test_no_growth_over_10000_calls():
    proc = psutil.Process()
    for i in range(500):  # warm up caches and free lists
        one_round(i)
    gc.collect()
    refs0 = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else 0
    blocks0 = sys.getallocatedblocks()
    rss0 = proc.memory_info().rss
    for i in range(10_000):
        one_round(i)
    gc.collect()
    refs1 = sys.gettotalrefcount() if hasattr(sys, "gettotalrefcount") else 0
    blocks1 = sys.getallocatedblocks()
    rss1 = proc.memory_info().rss
    assert refs1 - refs0 < 1000, (refs0, refs1)  # debug builds only
    assert blocks1 - blocks0 < 200, (blocks0, blocks1)
    if os.environ.get("TB_ASAN"):
        return  # ASan's quarantine holds freed memory: RSS says nothing there
    # a leak of even one small C array per call would be > 3 MB here
    assert rss1 - rss0 < 2 * 1024 * 1024, (rss0, rss1)
