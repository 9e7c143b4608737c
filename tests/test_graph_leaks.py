"""The Graph glue must not leak: 10,000 calls of every entry point, error paths too."""

from __future__ import annotations

import gc
import sys

import psutil
import pytest

from tiny_backprop import _C

N = 40
GOOD = (
    [1000 + v for v in range(N)],
    [v % 3 for v in range(N)],
    [float(v) for v in range(N)],
    [16] + [128 * (v % 2) for v in range(1, N)],
    [[]] + [[v - 1] + ([v - 2] if v > 1 else []) for v in range(1, N)],
)
BAD = [
    ([1, -5], [0, 0], [0.0, 0.0], [0, 0], [[], [0]]),
    ([1, 5], [0, 0], [0.0, float("nan")], [0, 0], [[], [0]]),
    ([1, 5], [0, 0], [0.0, 0.0], [0, 0], [[], [9]]),
    ([1, 5], [0, 0], [0.0, 0.0], [0, 0], [[1], [0]]),  # cycle
    ([1, 5], [0, 0], [0.0, 0.0], [0, 0], [[], ["x"]]),
    ([1, 5], [0], [0.0, 0.0], [0, 0], [[], [0]]),
]


def one_round(i: int) -> None:
    g = _C.Graph(*GOOD)
    g.topo_order()
    g.frontier_bytes()
    g.store_all_peak()
    g.lower_bound()
    g.coarsen(1 + i % 50)
    try:
        g.coarsen(0)
    except ValueError:
        pass
    try:
        _C.Graph(*BAD[i % len(BAD)])
    except (TypeError, ValueError):
        pass


@pytest.mark.slow
def test_no_growth_over_10000_calls():
    proc = psutil.Process()
    for i in range(500):  # warm up caches and free lists
        one_round(i)
    gc.collect()
    blocks0 = sys.getallocatedblocks()
    rss0 = proc.memory_info().rss
    for i in range(10_000):
        one_round(i)
    gc.collect()
    blocks1 = sys.getallocatedblocks()
    rss1 = proc.memory_info().rss
    assert blocks1 - blocks0 < 200, (blocks0, blocks1)
    # a leak of even one small C array per call would be > 3 MB here
    assert rss1 - rss0 < 2 * 1024 * 1024, (rss0, rss1)
