"""Type stubs of the C extension tiny_backprop._C."""

from collections.abc import Sequence

def strerror(code: int) -> str:
    """Description of a C core status code."""

# ---- graph (csrc/py_graph.c) ----------------------------------------------------

class Graph:
    """A computation graph for the C core; the arguments are copied, never modified.

    output_bytes[v]: bytes of node v's outputs; saved_bytes[v]: bytes autograd saves for
    v that are not graph values; cost[v]: forward cost (FLOPs or a proxy); flags[v]:
    FLAG_* bits of tiny_backprop.ir; inputs[v]: ids of the nodes v reads.
    Raises TypeError/ValueError naming the argument on bad input, ValueError on a cycle.
    """

    def __init__(
        self,
        output_bytes: Sequence[int],
        saved_bytes: Sequence[int],
        cost: Sequence[float],
        flags: Sequence[int],
        inputs: Sequence[Sequence[int]],
    ) -> None: ...
    @property
    def num_nodes(self) -> int: ...
    def topo_order(self) -> list[int]:
        """Node ids in the topological order used by the analysis."""
    def frontier_bytes(self) -> list[int]:
        """Bytes live after each position of topo_order()."""
    def store_all_peak(self) -> int:
        """Peak bytes of one forward + backward that keeps everything backward needs."""
    def lower_bound(self) -> int:
        """Bytes below which no schedule of this graph can peak."""
    def coarsen(self, max_stages: int) -> list[tuple[int, int, float, float, int, int, bool]]:
        """Stages (start, end, forward_cost, backward_cost, input_bytes, saved_bytes,
        never_recompute) over positions [start, end) of topo_order()."""

# ---- end graph ------------------------------------------------------------------
