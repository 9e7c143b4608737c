"""Op-level options inside recomputed blocks: which op outputs a region keeps.

A block inside a recompute region normally re-runs every op on backward. Keeping the
output of an op in forward (the runtime's op-level keep policy, `runtime.keep_ops`)
saves that op's recompute cost and holds its output bytes from the block's forward until
the region is recomputed. Ops with a large cost per byte (matmuls: q, k, v, the MLP's
projections) are the ones worth keeping; softmax, dropout and GELU outputs are large and
cheap.

Level 1 of the two-level planner lives here: `block_options` gives each block stage a
Pareto set of keep sets (bytes held, recompute cost saved), from exact 0/1 knapsacks in
C (`choose`); the C chain DP (level 2, `plan_chain(options=...)`) picks one per
one-block region at the top level. `items_for` / `worth_keeping` serve the second
candidate (`planning._slack_search`) for regions over several blocks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .blocks import BlockChain, flop_cost
from .runtime.keep_ops import MASK_OPS
from .trace.types import CallRecord, OpRecord, Trace
from .tree import Keep, Node, Region


@dataclass(frozen=True)
class KeepItem:
    """One op output a region may keep: which block call, which op, bytes, cost saved."""

    call: int  # trace call index of the block
    op: int  # trace op index
    nbytes: int
    cost: float


def kept_bytes(op: OpRecord) -> int:
    """Bytes the keep policy holds for `op`'s output: a 0/1 draw (`MASK_OPS`) as bool,
    one byte per element; otherwise its new storages (or, in place, its first
    argument's)."""
    nbytes = op.self_write_bytes if op.inplace else op.out_bytes
    if op.name in MASK_OPS and nbytes > 0:
        return min(nbytes, op.elements)
    return nbytes


def keepable(trace: Trace, call: CallRecord, element_weight: float,
             costs: list[float] | None = None,
             skip: tuple[CallRecord, ...] = ()) -> list[KeepItem]:
    """Ops of a block call whose outputs the runtime may keep (a new storage, or an op
    writing only its first argument; not data-dependent), with their bytes and recompute
    cost (`costs` per op index when measured, else FLOP-equivalents). Ops inside the
    calls `skip` (nested regions of their own) are left out."""
    out = []
    for op in trace.ops[call.first_op:call.end_op]:
        if any(c.first_op <= op.index < c.end_op for c in skip):
            continue
        nbytes = kept_bytes(op)
        if op.data_dependent or nbytes <= 0:
            continue
        c = flop_cost(op, element_weight) if costs is None else costs[op.index]
        if c > 0:
            out.append(KeepItem(call.index, op.index, nbytes, c))
    return out


def recompute_extra(trace: Trace, call: CallRecord, items: list[KeepItem] | tuple) -> int:
    """Most bytes that kept `items` add to a one-block region's recomputation of `call`
    over its saved bytes at the end (bytes, >= 0).

    While the block is recomputed, a kept output is held until its op is reached and
    then served: it becomes the saved tensor it was (counted in the block's saved bytes
    from then on) or, when autograd does not save it (a bool mask, an in-place copy, an
    output only its consumers use), is released. Walking the block's ops: held before op
    i = saved storages made by ops before i (the block's non-boundary ones, counted from
    the op that made them) + kept bytes of ops >= i; the result is the most of that
    minus the saved bytes at the end."""
    start, made_at = _saved_made_at(trace, call)
    kept_at: dict[int, int] = {}
    for it in items:
        kept_at[it.op] = kept_at.get(it.op, 0) + it.nbytes
    saved, kept = start, sum(kept_at.values())
    most = saved + kept
    for i in sorted(made_at.keys() | kept_at.keys()):  # held changes only at these ops
        kept -= kept_at.get(i, 0)
        saved += made_at.get(i, 0)
        most = max(most, saved + kept)
    return max(0, most - saved)


def _saved_made_at(trace: Trace, call: CallRecord) -> tuple[int, dict[int, int]]:
    """(bytes of the call's non-boundary saved storages made before it, {op index: bytes
    of those made by that op})."""
    boundary = set(call.input_keys) | set(call.output_keys)
    made_at: dict[int, int] = {}
    start = 0
    for sid, nb in call.saved.items():
        if sid in boundary:
            continue
        i = trace.produced.get(sid, -1)
        if call.first_op <= i < call.end_op:
            made_at[i] = made_at.get(i, 0) + nb
        else:
            start += nb
    return start, made_at


def top_kept_blocks(tree: tuple[Node, ...] | list[Node]) -> list[int]:
    """Stages that are direct Keep children of top-level regions (recomputed once)."""
    out: list[int] = []
    for node in tree:
        if isinstance(node, Region):
            out.extend(c.stage for c in node.children if isinstance(c, Keep))
    return out


#: Memory units of the keep-set knapsack (weights rounded up to capacity / KNAPSACK_SLOTS).
KNAPSACK_SLOTS = 4096


def choose(items: list[KeepItem], capacity: int) -> list[KeepItem]:
    """The items of largest total cost saved whose bytes fit `capacity` (an exact 0/1
    knapsack in C over bytes discretised into `KNAPSACK_SLOTS` units, rounded up)."""
    if not items or capacity <= 0:
        return []
    from . import _C

    _, idx = _C.knapsack([it.nbytes for it in items], [it.cost for it in items],
                         int(capacity), KNAPSACK_SLOTS)
    return [items[i] for i in idx]


def region_keep_keys(trace: Trace, calls: list[CallRecord], ops: set[int]
                     ) -> frozenset[tuple[str, int]]:
    """(op name, occurrence within the region) of trace ops `ops` in a region's calls."""
    counts: dict[str, int] = {}
    keys = set()
    for c in calls:
        for op in trace.ops[c.first_op:c.end_op]:
            occ = counts.get(op.name, 0)
            counts[op.name] = occ + 1
            if op.index in ops:
                keys.add((op.name, occ))
    return frozenset(keys)


def items_for(trace: Trace, chain: BlockChain, stages: list[int],
              element_weight: float, costs: list[float] | None = None,
              cache: dict[int, list[KeepItem]] | None = None) -> list[KeepItem]:
    """Keepable ops of the chain's block stages `stages` (1-based over blocks); `cache`
    (stage -> items) keeps them across calls on the same chain and costs."""
    out: list[KeepItem] = []
    for st in stages:
        if 1 <= st <= len(chain.calls):
            if cache is not None and st in cache:
                out.extend(cache[st])
                continue
            skip = chain.nested[st] if chain.nested else ()
            items = keepable(trace, chain.calls[st - 1], element_weight, costs, skip)
            if cache is not None:
                cache[st] = items
            out.extend(items)
    return out


#: Capacities (fractions of a block's keepable bytes) at which level 1 solves the
#: block's knapsack; each distinct keep set found is one option of the block.
OPTION_POINTS = tuple(i / 16 for i in range(1, 17))


@dataclass(frozen=True)
class BlockOption:
    """One level-1 option of a block stage: keep `items`, holding `nbytes` more from
    the block's forward to its backward and saving `save` of its recomputation (the
    items' cost less the keep policy's dispatch cost), in the chain's cost unit."""

    stage: int
    nbytes: int
    save: float
    items: tuple[KeepItem, ...]
    overlap: int = 0  # of nbytes, those not held on top of the block's saved bytes
    # while it is recomputed (nbytes - `recompute_extra`)


def block_options(trace: Trace, chain: BlockChain, element_weight: float,
                  costs: list[float] | None, per_op: float) -> list[BlockOption]:
    """Level 1 of the two-level planner: per block stage, the Pareto set of (bytes held,
    recompute cost saved) over its op-level keep sets.

    Each point is an exact 0/1 knapsack (`choose`) of the block's keepable ops at one of
    `OPTION_POINTS` of their total bytes, less the dispatch cost of the keep policy
    (`per_op` per op of the block, forward and recompute); points that do not save
    more than a smaller one are dropped. Identical blocks (same ops, bytes and costs,
    relative to the block's first op) are solved once. Each option's `overlap` is its
    bytes less what they add to the block's recomputation (`recompute_extra`).
    """
    solved: dict[tuple, list[tuple[int, float, tuple[int, ...]]]] = {}
    extra: dict[tuple, int] = {}
    out: list[BlockOption] = []
    for st in range(1, len(chain.calls) + 1):
        call = chain.calls[st - 1]
        skip = chain.nested[st] if chain.nested else ()
        items = keepable(trace, call, element_weight, costs, skip)
        if not items:
            continue
        base = call.first_op
        key = tuple((it.op - base, it.nbytes, round(it.cost, 12)) for it in items)
        n_ops = call.end_op - call.first_op
        if key not in solved:
            total = sum(it.nbytes for it in items)
            points: list[tuple[int, float, tuple[int, ...]]] = []
            seen: set[tuple[int, ...]] = set()
            for frac in OPTION_POINTS:
                picked = choose(items, int(total * frac))
                ids = tuple(sorted(it.op - base for it in picked))
                if not ids or ids in seen:
                    continue
                seen.add(ids)
                save = sum(it.cost for it in picked) - 2.0 * per_op * n_ops
                if save > 0:
                    points.append((sum(it.nbytes for it in picked), save, ids))
            points.sort(key=lambda p: (p[0], -p[1]))
            pareto: list[tuple[int, float, tuple[int, ...]]] = []
            for p in points:
                if not pareto or p[1] > pareto[-1][1]:
                    pareto.append(p)
            solved[key] = pareto
        by_off = {it.op - base: it for it in items}
        limit = float(chain.forward_cost[st])
        start, made_at = _saved_made_at(trace, call)
        shape = (key, start, tuple(sorted((i - base, b) for i, b in made_at.items())))
        for nbytes, save, ids in solved[key]:
            picked = tuple(by_off[i] for i in ids)
            # a nested stage's saved bytes follow its sub-regions: no overlap claimed
            if skip:
                overlap = 0
            else:
                if (shape, ids) not in extra:  # identical blocks: once
                    extra[(shape, ids)] = recompute_extra(trace, call, picked)
                overlap = nbytes - min(nbytes, extra[(shape, ids)])
            out.append(BlockOption(st, nbytes, min(save, limit), picked, overlap))
    return out


#: Cost of one op passing through a region's keep policy (a Python dispatch mode), per
#: pass (forward and recompute), in the chain's cost unit. Measured 2026-12-02 (CPU,
#: torch 2.13.0, 1 thread): zoo gpt2 small at budget 0.5, 16 kept ops in 4 regions
#: (~360 dispatched ops): 0.0554 s per step with the policies vs 0.0494 s without, about
#: 17 us per op; at the ~40 GFLOP/s of a one-thread CPU matmul, ~7e5 FLOP-equivalents.
DISPATCH_COST = {"flops": 7e5, "elements10": 7e5, "measured": 1.7e-5}


def worth_keeping(trace: Trace, chain: BlockChain, tree: tuple[Node, ...] | list[Node],
                  kept: list[KeepItem], per_op: float) -> tuple[list[KeepItem], float]:
    """Drop the kept ops of top-level regions whose savings do not pay for the keep
    policy's dispatch cost (every op of the region, in forward and recompute); returns
    the kept ops left and their net saving."""
    region_of: dict[int, Region] = {}
    for node in tree:
        if isinstance(node, Region):
            for c in node.children:
                if isinstance(c, Keep):
                    region_of[chain.calls[c.stage - 1].index] = node
    groups: dict[int, list[KeepItem]] = {}
    for k in kept:
        r = region_of.get(k.call)
        if r is not None:
            groups.setdefault(id(r), []).append(k)
    by_id = {id(r): r for r in region_of.values()}
    out: list[KeepItem] = []
    net = 0.0
    for rid, items in groups.items():
        r = by_id[rid]
        n_ops = sum(c.end_op - c.first_op for c in chain.calls[r.start - 1:r.end - 1])
        overhead = 2.0 * per_op * n_ops
        saving = sum(k.cost for k in items)
        if saving > overhead:
            out.extend(items)
            net += saving - overhead
    return out, net
