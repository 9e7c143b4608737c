"""Type stubs of the C extension tiny_backprop._C."""

from collections.abc import Sequence
from typing import overload

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
    def coarsen_chain(
        self, max_stages: int
    ) -> tuple[list[tuple[int, int, float, float, int, int, bool]], list[tuple[int, int, int]]]:
        """coarsen(max_stages) and its live intervals: sorted (producer_stage,
        last_user_stage, bytes) for every non-input value crossing a stage boundary."""

# ---- end graph ------------------------------------------------------------------

# --- planner (csrc/py_planner.c) ------------------------------------------------
# Plan trees cross the boundary as preorder (kind, start, end) triples:
# kind 0 = Keep(start), 1 = Region(start, end); children follow their region.

PLANNERS: tuple[str, ...]

Nodes = tuple[tuple[int, int, int], ...]

class Chain:
    """An immutable chain of stages, copied and validated once (docs/api.md)."""

    def __init__(
        self,
        forward_cost: Sequence[float],
        backward_cost: Sequence[float],
        input_bytes: Sequence[int],
        saved_bytes: Sequence[int],
        *,
        must_keep: Sequence[bool] | None = None,
        live_intervals: Sequence[tuple[int, int, int]] | None = None,
        options: Sequence[tuple[int, int, float] | tuple[int, int, float, int]] | None = None,
        working_bytes: Sequence[int] | None = None,
        cut_before: Sequence[bool] | None = None,
    ) -> None: ...
    def __len__(self) -> int: ...
    @property
    def options(self) -> tuple[tuple[int, int, float, int], ...] | None:
        """(stage, bytes, save, overlap) per option, grouped by stage; None without."""
    @property
    def working_bytes(self) -> tuple[int, ...] | None:
        """Per stage, the bytes its backward needs beyond its saved ones; None without."""
    @property
    def cut_before(self) -> tuple[bool, ...] | None:
        """Per stage, True where no region spans the boundary before it; None without."""
    @property
    def num_stages(self) -> int: ...
    @property
    def forward_cost(self) -> tuple[float, ...]: ...
    @property
    def backward_cost(self) -> tuple[float, ...]: ...
    @property
    def input_bytes(self) -> tuple[int, ...]: ...
    @property
    def saved_bytes(self) -> tuple[int, ...]: ...
    @property
    def must_keep(self) -> tuple[bool, ...] | None: ...
    @property
    def live_intervals(self) -> tuple[tuple[int, int, int], ...] | None: ...

@overload
def plan_chain(
    chain: Chain,
    budget: int,
    planner: str = "optimal",
    slots: int = 512,
    height: int = -1,
    transient: bool | None = False,
) -> tuple[Nodes, float, float, int] | None:
    """(nodes, planned_cost, simulated_cost, peak_bytes); None if 'optimal' finds no plan."""
@overload
def plan_chain(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    budget: int,
    planner: str = "optimal",
    slots: int = 512,
    must_keep: Sequence[bool] | None = None,
    height: int = -1,
    live_intervals: Sequence[tuple[int, int, int]] | None = None,
    transient: bool | None = False,
) -> tuple[Nodes, float, float, int] | None: ...
@overload
def min_budget(chain: Chain, transient: bool | None = False) -> tuple[int, float, Nodes]:
    """(smallest feasible budget in bytes, cost, a schedule reaching it)."""
@overload
def min_budget(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    must_keep: Sequence[bool] | None = None,
    live_intervals: Sequence[tuple[int, int, int]] | None = None,
    transient: bool | None = False,
) -> tuple[int, float, Nodes]: ...
@overload
def simulate(
    chain: Chain, nodes: Sequence[tuple[int, int, int]], transient: bool | None = False
) -> tuple[float, int]:
    """(total cost, peak bytes) of a plan tree under the model."""
@overload
def simulate(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    nodes: Sequence[tuple[int, int, int]],
    must_keep: Sequence[bool] | None = None,
    live_intervals: Sequence[tuple[int, int, int]] | None = None,
    transient: bool | None = False,
) -> tuple[float, int]: ...
# --- end planner ------------------------------------------------------------------

# --- accountant (csrc/py_accountant.c) --------------------------------------------

class Accountant:
    """Live bytes of held storages (keyed by storage id; a storage counts once)."""

    def __init__(self) -> None: ...
    def hold(self, key: int, nbytes: int) -> None:
        """One more hold of storage `key` (bytes)."""
    def release(self, key: int) -> None:
        """One hold of `key` ends (KeyError if not held)."""
    def unpack(self) -> None:
        """Count an unpack event."""
    def recompute(self, nbytes: int, seconds: float) -> None:
        """Record one recomputation."""
    def holds(self, key: int) -> int:
        """Live holds of `key`."""
    def reset_peak(self) -> None:
        """Peak = live bytes; event counters and totals zeroed."""
    @property
    def live_bytes(self) -> int: ...
    @property
    def peak_bytes(self) -> int: ...
    @property
    def n_live(self) -> int: ...
    @property
    def n_hold(self) -> int: ...
    @property
    def n_release(self) -> int: ...
    @property
    def n_unpack(self) -> int: ...
    @property
    def n_recompute(self) -> int: ...
    @property
    def recompute_bytes(self) -> int: ...
    @property
    def recompute_seconds(self) -> float: ...
# --- end accountant ----------------------------------------------------------------

def knapsack(
    weights: Sequence[int], values: Sequence[float], capacity: int, slots: int = 4096
) -> tuple[float, tuple[int, ...]]:
    """0/1 knapsack: items (weights in bytes, values >= 0) of largest total value whose
    weights fit `capacity` bytes (weights rounded up to ceil(capacity/slots)-byte units,
    so the chosen set always fits). Returns (value, chosen indices ascending)."""
    ...
