"""Graph analysis and coarsening of a captured graph into a chain of stages.

The C core does the work (``tiny_backprop._C.Graph``); this module gives it a typed
Python face. Sizes are bytes, costs FLOPs (or the capture's proxy units).
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import GraphIR


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
    needs besides x_i. Costs in the IR's units; backward_cost defaults to 2x forward.
    """

    bounds: list[tuple[int, int]]
    forward_cost: list[float]
    backward_cost: list[float]
    input_bytes: list[int]
    saved_bytes: list[int]
    topo_order: list[int]

    def __len__(self) -> int:
        return len(self.bounds)


def analyze_graph(ir: GraphIR) -> GraphAnalysis:
    """Frontier profile, store-all peak and lower bound of a captured graph."""
    raise NotImplementedError("filled in by the graph-core work")


def stage_chain(ir: GraphIR, max_stages: int | None = None) -> StageChain:
    """Coarsen a captured graph into a chain of at most `max_stages` stages."""
    raise NotImplementedError("filled in by the graph-core work")
