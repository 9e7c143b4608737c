"""Slow, obviously-correct Python twins of the C planner and simulator.

Used by the tests (C must agree with these) and by the benchmark (speed baseline).
Stages are 0-based here; sizes are bytes (or slots), costs are in the chain's units.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from functools import cache

from .tree import Keep, Node, Region

INF = math.inf

Live = Sequence[tuple[int, int, int]]
#: Per stage, its options (bytes, save) or (bytes, save, overlap) in order (see
#: `plan_chain(options=...)`; overlap: the part of bytes that g[s] includes, default 0).
Options = Sequence[Sequence[tuple]]


def _option(o: tuple) -> tuple[int, float, int]:
    """(bytes, save, overlap) of one option."""
    return (int(o[0]), float(o[1]), int(o[2]) if len(o) > 2 else 0)


def new_bytes(x: Sequence[int], live: Live | None) -> Callable[[int, int], int]:
    """d(s, k): bytes of boundary k new since boundary s (s < k). Plain chain (no
    intervals): x[k]. With intervals (j, u, bytes): the sum over s <= j < k <= u."""
    if not live:
        return lambda s, k: x[k]

    def d(s: int, k: int) -> int:
        return sum(nb for j, u, nb in live if s <= j < k <= u)

    return d


def transient_fn(d: Callable[[int, int], int], on: bool) -> Callable[[int, int], int]:
    """tr(s, k): most bytes new since boundary s held at once while region [s, k) runs
    its forward (stage j's input and output both live): max over s <= j < k of
    d(s, j) + d(j, j+1), with d(s, s) = 0. Zero when the transient term is off."""
    if not on:
        return lambda s, k: 0
    return lambda s, k: max((d(s, j) if j > s else 0) + d(j, j + 1) for j in range(s, k))


def leaf_fn(
    g: Sequence[int], d: Callable[[int, int], int], n: int, on: bool,
    w: Sequence[int] | None = None,
) -> Callable[[int], int]:
    """Bytes the last stage s of a sequence needs while it runs: g[s] plus the larger of
    its backward's working bytes w[s] and, with the transient term and s < n-1 (inside a
    recomputation), the new copy of its output."""
    work = list(w) if w is not None else [0] * n
    return lambda s: g[s] + max(work[s], d(s, s + 1) if on and s + 1 < n else 0)


def discretise(
    input_bytes: Sequence[int], saved_bytes: Sequence[int], budget: int, slots: int
) -> tuple[list[int], list[int], int]:
    """Sizes and budget in slots: unit = max(1, ceil(budget/slots)), sizes round up,
    the budget rounds down. Returns (x_slots, g_slots, budget_slots)."""
    unit = max(1, -(-budget // slots))
    return (
        [-(-v // unit) for v in input_bytes],
        [-(-v // unit) for v in saved_bytes],
        budget // unit,
    )


def optimal(
    f: Sequence[float],
    b: Sequence[float],
    x: Sequence[int],
    g: Sequence[int],
    budget: int,
    must_keep: Sequence[bool] | None = None,
    live: Live | None = None,
    transient: bool = False,
    options: Options | None = None,
    working: Sequence[int] | None = None,
    cut: Sequence[bool] | None = None,
) -> tuple[float, tuple[Node, ...] | None]:
    """The model's optimum for integer sizes and an integer budget (no discretisation).

    `x` may be sizes in slots with `live` None, or with `live` given `d` is built from
    it (then only x[0] is read). `options[s]`: stage s's (bytes, save) options, open to
    a one-stage region at the top level. `working[s]`: bytes stage s's backward needs
    beyond g[s]. `cut[k]`: no region contains both stage k-1 and stage k. Returns
    (cost, tree); (inf, None) when no schedule fits.
    """
    n = len(f)
    d = new_bytes(x, live)
    tr = transient_fn(d, transient)
    leaf = leaf_fn(g, d, n, transient, working)
    work = list(working) if working is not None else [0] * n
    mk = list(must_keep) if must_keep is not None else [False] * n
    cuts = list(cut) if cut is not None else [False] * n
    opts = ([[_option(q) for q in o] for o in options] if options is not None
            else [[] for _ in range(n)])
    sys.setrecursionlimit(max(10000, sys.getrecursionlimit()))

    @cache
    def opt(s: int, t: int, m: int) -> tuple[float, int]:
        """(cost, choice): choice -1 = keep s, k > s = region [s, k), -2 - q = region
        [s, s+1) with option q."""
        if m < 0:
            return INF, -1
        if s == t:
            return (f[s] + b[s] if leaf(s) <= m else INF), -1
        best = (f[s] + b[s] + opt(s + 1, t, m - g[s] - d(s, s + 1))[0]
                if g[s] + work[s] <= m else INF)
        choice = -1
        for k in range(s + 1, t + 1):
            if any(mk[s:k]) or any(cuts[s + 1:k]):
                break
            if tr(s, k) > m:
                continue
            v = sum(f[s:k]) + opt(k, t, m - d(s, k))[0] + opt(s, k - 1, m)[0]
            if v < best:
                best, choice = v, k
        if t == n - 1 and not mk[s]:
            for q, (e, r, ov) in enumerate(opts[s]):
                # the rest of the chain and the region's forward hold e; its
                # recomputation holds e - ov (ov of them are its saved tensors)
                if m - e < tr(s, s + 1) or m - e + ov < leaf(s):
                    continue
                v = f[s] + (f[s] - r + b[s]) + opt(s + 1, t, m - d(s, s + 1) - e)[0]
                if v < best:
                    best, choice = v, -2 - q
        return best, choice

    def build(s: int, t: int, m: int) -> list[Node]:
        out: list[Node] = []
        while True:
            _, k = opt(s, t, m)
            if s == t:
                out.append(Keep(s))
                return out
            if k <= -2:
                q = -2 - k
                out.append(Region(s, s + 1, (Keep(s),), q))
                m -= d(s, s + 1) + opts[s][q][0]
                s += 1
            elif k < 0:
                out.append(Keep(s))
                m -= g[s] + d(s, s + 1)
                s += 1
            else:
                out.append(Region(s, k, tuple(build(s, k - 1, m))))
                m -= d(s, k)
                s = k

    cost = opt(0, n - 1, budget - x[0])[0]
    if cost == INF:
        return INF, None
    return cost, tuple(build(0, n - 1, budget - x[0]))


def simulate(
    f: Sequence[float],
    b: Sequence[float],
    x: Sequence[int],
    g: Sequence[int],
    tree: Sequence[Node],
    live: Live | None = None,
    transient: bool = False,
    options: Options | None = None,
    working: Sequence[int] | None = None,
) -> tuple[float, int]:
    """Replay a plan tree: (total cost, peak bytes held, the chain input included).
    A region's option q (`options[stage][q]` = (bytes, save[, overlap])) holds its bytes
    from the region's start to its backward and takes `save` off its recomputation;
    inside the recomputation `overlap` of the bytes are the stage's saved ones. Each
    stage's backward adds its `working` bytes to what is held then."""
    d = new_bytes(x, live)
    tr = transient_fn(d, transient)
    n = len(f)
    leaf = leaf_fn(g, d, n, transient, working)
    work = list(working) if working is not None else [0] * n

    def seq(nodes: Sequence[Node], s: int, t: int, held: int) -> tuple[float, int]:
        cost, peak, cur, nxt = 0.0, held, held, s
        for node in nodes:
            if isinstance(node, Keep):
                i = node.stage
                assert i == nxt
                cost += f[i] + b[i]
                if i == t:
                    peak = max(peak, cur + leaf(i))
                else:
                    peak = max(peak, cur + g[i] + work[i])  # its backward, later
                    cur += g[i] + d(i, i + 1)
                    peak = max(peak, cur)
                nxt = i + 1
            else:
                assert node.start == nxt and node.start < node.end <= t + 1
                inner = 0
                if node.option >= 0:
                    assert s == 0 and t == n - 1 and node.end == node.start + 1 < n
                    e, r, inner = _option(options[node.start][node.option])  # type: ignore[index]
                    cur += e
                    cost -= r
                # the region's running boundaries; its last stage's output (if any:
                # end <= n-1) is new memory even when an enclosing level holds it
                if node.end < n:
                    peak = max(peak, cur + tr(node.start, node.end))
                elif node.end - 1 > node.start:
                    peak = max(peak, cur + tr(node.start, node.end - 1))
                c_in, p_in = seq(node.children, node.start, node.end - 1, cur - inner)
                cost += sum(f[node.start : node.end]) + c_in
                peak = max(peak, p_in)
                if node.end - 1 != t:
                    cur += d(node.start, node.end)
                    peak = max(peak, cur)
                nxt = node.end
        assert nxt == t + 1
        return cost, peak

    return seq(tree, 0, len(f) - 1, x[0])


def min_budget(
    x: Sequence[int],
    g: Sequence[int],
    must_keep: Sequence[bool] | None = None,
    live: Live | None = None,
    transient: bool = False,
    working: Sequence[int] | None = None,
    cut: Sequence[bool] | None = None,
) -> int:
    """Smallest budget in bytes for which the model has a schedule."""
    n = len(x)
    d = new_bytes(x, live)
    tr = transient_fn(d, transient)
    leaf = leaf_fn(g, d, n, transient, working)
    work = list(working) if working is not None else [0] * n
    mk = list(must_keep) if must_keep is not None else [False] * n
    cuts = list(cut) if cut is not None else [False] * n

    @cache
    def mm(s: int, t: int) -> int:
        if s == t:
            return leaf(s)
        best = max(g[s] + d(s, s + 1) + mm(s + 1, t), g[s] + work[s])
        for k in range(s + 1, t + 1):
            if any(mk[s:k]) or any(cuts[s + 1:k]):
                break
            best = min(best, max(d(s, k) + mm(k, t), mm(s, k - 1), tr(s, k)))
        return best

    return x[0] + mm(0, n - 1)


def all_trees(n: int) -> list[tuple[Node, ...]]:
    """Every plan tree of a chain of n stages (a region's only child is never the same
    region), for brute-force checks; n <= 6 keeps this in the thousands."""

    @cache
    def seqs(s: int, t: int, forbid: tuple[int, int] | None) -> tuple[tuple[Node, ...], ...]:
        if s > t:
            return ((),)
        out: list[tuple[Node, ...]] = []
        for rest in seqs(s + 1, t, None):
            out.append((Keep(s),) + rest)
        for k in range(s + 1, t + 2):
            if forbid == (s, k):
                continue
            for inner in seqs(s, k - 1, (s, k)):
                for rest in seqs(k, t, None):
                    out.append((Region(s, k, inner),) + rest)
        return tuple(out)

    return list(seqs(0, n - 1, None))


def knapsack(weights: list[int], values: list[float], capacity: int) -> tuple[float, list[int]]:
    """Exact 0/1 knapsack by brute force (small n): (best value, chosen indices)."""
    from itertools import combinations

    best: tuple[float, list[int]] = (0.0, [])
    n = len(weights)
    for k in range(1, n + 1):
        for combo in combinations(range(n), k):
            if sum(weights[i] for i in combo) <= capacity:
                v = sum(values[i] for i in combo)
                if v > best[0]:
                    best = (v, list(combo))
    return best
