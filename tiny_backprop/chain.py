"""Graph analysis and coarsening of a captured graph into a chain of stages.

The C core does the work (``tiny_backprop._C.Graph``); this module gives it a typed
Python face. Sizes are bytes, costs FLOPs (or the capture's proxy units).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .ir import GraphIR

#: Default cap on the number of stages of :func:`stage_chain` (the planner's DP is
#: polynomial in the number of stages; a few hundred op-level stages stay fast).
DEFAULT_MAX_STAGES = 512


@dataclass(frozen=True)
class GraphAnalysis:
    """Whole-graph memory facts (bytes)."""

    topo_order: list[int]  # node indices in the order the analysis used
    frontier_bytes: list[int]  # live bytes after each position of topo_order
    store_all_peak: int  # peak of one forward + backward keeping everything
    lower_bound: int  # no schedule of this graph can peak below this


@dataclass(frozen=True)
class StageChain:
    """A chain of L stages whose boundaries are frontiers of the graph.

    bounds[i] = (start, end): stage i is nodes topo_order[start:end].
    input_bytes[i] = x_i, bytes of every tensor produced before stage i and used at or
    after it (skip connections included). saved_bytes[i] = g_i, what stage i's backward
    needs besides x_i and x_{i+1} (its nodes' extra saved bytes plus the saved values it
    makes that are not in the next boundary). Costs in the IR's units; backward_cost is
    2x forward. never_recompute[i]: the stage holds a node flagged NEVER_RECOMPUTE.
    live_intervals: (j, u, bytes) for every non-input value that crosses a stage
    boundary: produced in stage j, last used by stage u > j (u = L-1 for values that
    live to the end), merged by (j, u). x_i = (graph-input bytes live at stage i)
    + sum of bytes over intervals with j < i <= u. The planner charges a boundary only
    for the part new since the held one (docs/theory.md §2); empty = plain chain.
    """

    bounds: list[tuple[int, int]]
    forward_cost: list[float]
    backward_cost: list[float]
    input_bytes: list[int]
    saved_bytes: list[int]
    topo_order: list[int]
    never_recompute: list[bool]  # True if a node of the stage must never be recomputed
    live_intervals: list[tuple[int, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.bounds)


def _build(ir: GraphIR):
    """A ``_C.Graph`` of the IR (ValueError/TypeError with the C glue's messages)."""
    if not isinstance(ir, GraphIR):
        raise TypeError(f"ir must be a tiny_backprop.ir.GraphIR, got {type(ir).__name__}")
    from . import _C

    a = ir.arrays()
    return _C.Graph(a["output_bytes"], a["saved_bytes"], a["cost"], a["flags"], a["inputs"])


def analyze_graph(ir: GraphIR) -> GraphAnalysis:
    """Frontier profile, store-all peak and lower bound of a captured graph (bytes).

    Raises:
        TypeError: ``ir`` is not a GraphIR, or a node field has the wrong type.
        ValueError: a node has a negative size, a bad cost or input id, or the graph
            has a cycle.
    """
    g = _build(ir)
    return GraphAnalysis(
        topo_order=g.topo_order(),
        frontier_bytes=g.frontier_bytes(),
        store_all_peak=g.store_all_peak(),
        lower_bound=g.lower_bound(),
    )


def stage_chain(ir: GraphIR, max_stages: int | None = None) -> StageChain:
    """Coarsen a captured graph into a chain of at most `max_stages` stages.

    ``max_stages`` defaults to ``min(len(ir), DEFAULT_MAX_STAGES)`` (at least 1). With
    ``max_stages`` at least the number of non-trivial nodes (not PARAM, not an input
    placeholder) every such node gets its own stage. The cut heuristic is documented in
    csrc/core/graph.h (small frontiers, roughly balanced costs).
    """
    if max_stages is None:
        max_stages = max(
            1, min(len(ir.nodes) if isinstance(ir, GraphIR) else 1, DEFAULT_MAX_STAGES)
        )
    elif isinstance(max_stages, bool) or not isinstance(max_stages, int):
        raise TypeError(f"max_stages must be an int >= 1 or None, got {type(max_stages).__name__}")
    elif max_stages < 1:
        raise ValueError(f"max_stages must be >= 1, got {max_stages}")
    g = _build(ir)
    stages, intervals = g.coarsen_chain(max_stages)
    return StageChain(
        bounds=[(s[0], s[1]) for s in stages],
        forward_cost=[s[2] for s in stages],
        backward_cost=[s[3] for s in stages],
        input_bytes=[s[4] for s in stages],
        saved_bytes=[s[5] for s in stages],
        topo_order=g.topo_order(),
        never_recompute=[s[6] for s in stages],
        live_intervals=[(int(j), int(u), int(b)) for j, u, b in intervals],
    )
