"""Slow, obviously-correct pure-Python twin of the C graph analysis (csrc/core/graph.c).

Tests compare ``tiny_backprop._C.Graph`` with these functions on random graphs; every
output must be identical. The memory model is documented in csrc/core/graph.h. Sizes
are bytes; costs are in the IR's units. Float sums are plain left-to-right loops (not
``sum()``, which may compensate rounding) so results match C bit for bit.
"""

from __future__ import annotations

from .ir import (
    FLAG_ALIAS,
    FLAG_INPUT,
    FLAG_NEVER_RECOMPUTE,
    FLAG_OUTPUT,
    FLAG_OUTPUT_SAVED,
    FLAG_PARAM,
)

Stage = tuple[int, int, float, float, int, int, bool]


class RefGraph:
    """The analysis of one graph (same arguments as ``_C.Graph``; no validation)."""

    def __init__(
        self,
        output_bytes: list[int],
        saved_bytes: list[int],
        cost: list[float],
        flags: list[int],
        inputs: list[list[int]],
    ) -> None:
        self.n = len(output_bytes)
        self.output_bytes = list(output_bytes)
        self.saved_bytes = list(saved_bytes)
        self.cost = [float(c) for c in cost]
        self.flags = list(flags)
        self.inputs = [list(ins) for ins in inputs]
        self.order = self._topo_order()
        self.pos = {v: p for p, v in enumerate(self.order)}
        self.owner = self._owners()
        self.last = self._last_positions()

    # -- structure ---------------------------------------------------------------

    def _topo_order(self) -> list[int]:
        """Index order if it is topological, else Kahn's algorithm, smallest ready first."""
        if all(u < v for v in range(self.n) for u in self.inputs[v]):
            return list(range(self.n))
        remaining = {v: len(self.inputs[v]) for v in range(self.n)}
        order: list[int] = []
        while True:
            ready = [v for v in range(self.n) if remaining.get(v) == 0]
            if not ready:
                break
            u = min(ready)
            order.append(u)
            del remaining[u]
            for v in range(self.n):
                if v in remaining:
                    remaining[v] -= self.inputs[v].count(u)
        if len(order) != self.n:
            raise ValueError("graph has a cycle")
        return order

    def _owners(self) -> list[int]:
        """Storage root of each node: aliases share their first input's root."""
        owner = list(range(self.n))
        for v in self.order:
            if self.flags[v] & FLAG_ALIAS and self.inputs[v]:
                owner[v] = owner[self.inputs[v][0]]
        return owner

    def is_root(self, v: int) -> bool:
        return self.owner[v] == v

    def root_bytes(self, r: int) -> int:
        """Bytes a storage root owns (0 for PARAM roots and for non-roots)."""
        if not self.is_root(r) or self.flags[r] & FLAG_PARAM:
            return 0
        return self.output_bytes[r]

    def _last_positions(self) -> dict[int, int]:
        """Last position each root is live at; n means 'to the end' (an OUTPUT)."""
        last = {r: self.pos[r] for r in range(self.n) if self.is_root(r)}
        for v in range(self.n):
            for u in self.inputs[v]:
                r = self.owner[u]
                last[r] = max(last[r], self.pos[v])
        for v in range(self.n):
            if self.flags[v] & FLAG_OUTPUT:
                last[self.owner[v]] = self.n
        return last

    def is_saved_root(self, r: int) -> bool:
        """True if r's storage is kept for backward (it or an alias is OUTPUT_SAVED)."""
        return any(self.owner[v] == r and self.flags[v] & FLAG_OUTPUT_SAVED for v in range(self.n))

    def live_after(self, r: int, p: int) -> bool:
        return self.pos[r] <= p < self.last[r]

    # -- analysis ----------------------------------------------------------------

    def frontier_bytes(self) -> list[int]:
        """Bytes of the roots live after each position."""
        roots = [r for r in range(self.n) if self.is_root(r)]
        return [
            sum(self.root_bytes(r) for r in roots if self.live_after(r, p)) for p in range(self.n)
        ]

    def store_all_peak(self) -> int:
        """max over p of live bytes + dead-but-saved roots + saved_bytes so far."""
        frontier = self.frontier_bytes()
        peak = 0
        for p in range(self.n):
            held = frontier[p]
            for r in range(self.n):
                if self.is_root(r) and self.is_saved_root(r):
                    if self.pos[r] <= p and not self.live_after(r, p):
                        held += self.root_bytes(r)
            for v in self.order[: p + 1]:
                held += self.saved_bytes[v]
            peak = max(peak, held)
        return peak

    def lower_bound(self) -> int:
        """See csrc/core/graph.c for why this is a lower bound on any schedule."""
        outputs = {r for r in range(self.n) if self.is_root(r) and self.last[r] == self.n}
        bound = 0
        for v in range(self.n):
            roots = set(outputs)
            for u in [*self.inputs[v], v]:
                if self.flags[u] & FLAG_OUTPUT_SAVED:
                    roots.add(self.owner[u])
            need = self.saved_bytes[v] + sum(self.root_bytes(r) for r in roots)
            bound = max(bound, need)
        for r in range(self.n):
            if self.is_root(r) and self.last[r] > self.pos[r]:
                bound = max(bound, self.root_bytes(r))
        return bound

    # -- coarsening ----------------------------------------------------------------

    def is_trivial(self, v: int) -> bool:
        """PARAM nodes and INPUT placeholders never start a stage."""
        if self.flags[v] & FLAG_PARAM:
            return True
        return bool(self.flags[v] & FLAG_INPUT) and not self.inputs[v]

    def cut_positions(self, max_stages: int) -> list[int]:
        """Start positions of the stages (the heuristic of graph.h, written plainly)."""
        nontrivial = [p for p in range(self.n) if not self.is_trivial(self.order[p])]
        candidates = nontrivial[1:]
        if max_stages > len(candidates):
            return [0, *candidates]
        total = 0.0
        for v in self.order:
            total += self.cost[v]
        weights = []
        for v in self.order:
            if total > 0.0:
                weights.append(self.cost[v])
            else:
                weights.append(0.0 if self.is_trivial(v) else 1.0)
        prefix = [0.0]
        for w in weights:
            prefix.append(prefix[-1] + w)
        big_w = prefix[-1]
        frontier = self.frontier_bytes()
        num = max_stages
        half = big_w / (2.0 * float(num))
        starts = [0]
        lo = 0
        for j in range(1, num):
            hi = len(candidates) - num + j
            target = float(j) * big_w / float(num)
            allowed = range(lo, hi + 1)
            window = [i for i in allowed if target - half <= prefix[candidates[i]] <= target + half]
            if window:
                best = min(
                    window,
                    key=lambda i: (
                        frontier[candidates[i] - 1],
                        abs(prefix[candidates[i]] - target),
                        i,
                    ),
                )
            else:
                best = min(allowed, key=lambda i: (abs(prefix[candidates[i]] - target), i))
            starts.append(candidates[best])
            lo = best + 1
        return starts

    def coarsen(self, max_stages: int) -> list[Stage]:
        """Stages (start, end, fwd cost, bwd cost, input bytes, saved bytes, never_recompute)."""
        if max_stages < 1:
            raise ValueError("max_stages must be >= 1")
        if self.n == 0:
            return []
        starts = self.cut_positions(max_stages)
        bounds = list(zip(starts, [*starts[1:], self.n]))
        frontier = self.frontier_bytes()
        stages: list[Stage] = []
        for i, (start, end) in enumerate(bounds):
            nodes = self.order[start:end]
            forward = 0.0
            for v in nodes:
                forward += self.cost[v]
            saved = 0
            for v in nodes:
                saved += self.saved_bytes[v]
            for r in nodes:
                if self.is_root(r) and self.is_saved_root(r) and self.last[r] < end:
                    saved += self.root_bytes(r)
            if i == 0:
                x = sum(
                    self.root_bytes(r)
                    for r in range(self.n)
                    if self.is_root(r) and self.flags[r] & FLAG_INPUT and self.last[r] > self.pos[r]
                )
            else:
                x = frontier[start - 1]
            never = any(self.flags[v] & FLAG_NEVER_RECOMPUTE for v in nodes)
            stages.append((start, end, forward, 2.0 * forward, x, saved, never))
        return stages

    def live_intervals(self, stages: list[Stage]) -> list[tuple[int, int, int]]:
        """(j, u, bytes) per non-input root live after its position, j = its stage,
        u = the stage of min(last, n - 1), kept if j < u; merged by (j, u), sorted."""
        stage_of = {}
        for i, st in enumerate(stages):
            for p in range(st[0], st[1]):
                stage_of[p] = i
        merged: dict[tuple[int, int], int] = {}
        for r in range(self.n):
            nbytes = self.root_bytes(r)
            if not self.is_root(r) or nbytes == 0 or self.flags[r] & FLAG_INPUT:
                continue
            if self.last[r] <= self.pos[r]:
                continue
            j = stage_of[self.pos[r]]
            u = stage_of[min(self.last[r], self.n - 1)]
            if j < u:
                merged[(j, u)] = merged.get((j, u), 0) + nbytes
        return [(j, u, b) for (j, u), b in sorted(merged.items())]
