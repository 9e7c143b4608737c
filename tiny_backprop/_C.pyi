# --- planner (csrc/py_planner.c) ------------------------------------------------
# Plan trees cross the boundary as preorder (kind, start, end) triples:
# kind 0 = Keep(start), 1 = Region(start, end); children follow their region.
from collections.abc import Sequence

PLANNERS: tuple[str, ...]

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
) -> tuple[tuple[tuple[int, int, int], ...], float, float, int] | None:
    """(nodes, planned_cost, simulated_cost, peak_bytes); None if 'optimal' finds no plan."""

def min_budget(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    must_keep: Sequence[bool] | None = None,
) -> tuple[int, float, tuple[tuple[int, int, int], ...]]:
    """(smallest feasible budget in bytes, cost, a schedule reaching it)."""

def simulate(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    nodes: Sequence[tuple[int, int, int]],
    must_keep: Sequence[bool] | None = None,
) -> tuple[float, int]:
    """(total cost, peak bytes) of a plan tree under the model."""
# --- end planner ------------------------------------------------------------------
