"""From a model and example inputs to the regions the runtime applies.

``plan_model`` traces one forward on fake tensors (no activation memory), builds the
per-block chain, plans it with the C planner for the budget and turns the plan tree
into module-call regions (`RuntimePlan`).
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass, replace
from typing import Any, Union

from torch import nn

from .blocks import COST_MODELS, BlockChain, block_chain, regions_of_tree
from .plan import PLANNERS, Plan, format_bytes, parse_budget, plan_chain
from .runtime.spec import RuntimePlan
from .trace import Trace, trace_model

Budget = Union[int, float, str]

#: Smallest int budget accepted (bytes); smaller ints are almost always a mistaken fraction.
MIN_INT_BUDGET = 4096


def check_budget(budget: Any) -> None:
    """Raise TypeError/ValueError for a budget that cannot be right, before any trace.

    Accepted: int bytes (>= 4096), a size string ("2GiB", "512MB", "1e9"), a float
    fraction of the store-all peak in (0, 1], or "auto" (fit the device).
    """
    if isinstance(budget, bool) or not isinstance(budget, (numbers.Real, str)):
        raise TypeError(
            "budget must be int bytes, a size string like '2GiB', a float fraction of the "
            f"store-all peak in (0, 1], or 'auto'; not {type(budget).__name__}")
    if isinstance(budget, str):
        if budget.strip().lower() == "auto":
            return
        nbytes = parse_budget(budget, 1)
        if nbytes < MIN_INT_BUDGET:
            try:
                as_float = float(budget)
            except ValueError:
                as_float = math.nan
            if 0.0 < as_float <= 1.0:
                raise ValueError(
                    f"budget={budget!r} is a string, which is read as bytes ({nbytes} B); "
                    f"for a fraction of the store-all peak pass the float {as_float!r}")
            raise ValueError(f"budget={budget!r} is {nbytes} bytes, less than "
                             f"{MIN_INT_BUDGET}: give a size such as '2GiB' or a float fraction")
        return
    if isinstance(budget, numbers.Integral):
        if budget < 0:
            raise ValueError(f"budget must be >= 0 bytes, got {budget}")
        if budget < MIN_INT_BUDGET:
            raise ValueError(
                f"budget={budget} is an int, so it means {budget} bytes; for a fraction of "
                f"the store-all peak pass a float (budget={float(budget)!r} is the whole "
                f"peak, 0.5 half of it), for bytes at least {MIN_INT_BUDGET}")
        return
    parse_budget(float(budget), 1)  # the fraction's range check


@dataclass(frozen=True)
class ModelPlan:
    """The plan of one input signature.

    Attributes:
        chain_plan: the C planner's plan over the chain (``.tree``, ``.peak_bytes``,
            ``.recompute_cost``; ``.chain`` is the `BlockChain`).
        regions: the module-call regions the runtime applies.
        trace_seconds, plan_seconds: time spent tracing and planning (seconds).
        trace_method: "fake" or "real" (see `tiny_backprop.trace`).
    """

    chain_plan: Plan
    regions: RuntimePlan
    trace_seconds: float
    plan_seconds: float
    trace_method: str

    @property
    def chain(self) -> BlockChain:
        return self.chain_plan.chain

    @property
    def predicted_peak_bytes(self) -> int:
        """Peak held activation bytes the planner predicts (bytes)."""
        return int(self.chain_plan.peak_bytes)

    @property
    def peak_bytes(self) -> int:
        """Alias of `predicted_peak_bytes` (bytes)."""
        return int(self.chain_plan.peak_bytes)

    @property
    def budget_bytes(self) -> int:
        """The budget planned for (bytes)."""
        return int(self.chain_plan.budget_bytes)

    @property
    def tree(self) -> tuple:
        """The plan tree over the chain's stages (`Keep`/`Region`)."""
        return self.chain_plan.tree

    @property
    def recompute_cost(self) -> float:
        """Extra forward cost of the plan (FLOP-equivalents)."""
        return float(self.chain_plan.recompute_cost)

    def __str__(self) -> str:
        lines = [str(self.chain_plan), f"  blocks: {self.chain.container or '<top-level calls>'} "
                 f"({len(self.chain.calls)} calls); traced on {self.trace_method} tensors in "
                 f"{self.trace_seconds * 1e3:.0f} ms, planned in {self.plan_seconds * 1e3:.1f} ms"]
        for r in self.regions.regions:
            lines.append(f"  region {r.label()}" + (f" ({len(r.children)} nested)"
                                                    if r.children else ""))
        return "\n".join(lines)


def plan_trace(model: nn.Module, trace: Trace, budget: Budget, planner: str = "optimal",
               cost_model: str = "flops", budget_bytes: int | None = None) -> ModelPlan:
    """Plan a trace for `budget` (or exactly `budget_bytes` when given)."""
    if planner not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {planner!r}")
    if cost_model not in COST_MODELS:
        raise ValueError(f"cost_model must be one of {tuple(COST_MODELS)}, got {cost_model!r}")
    t0 = time.perf_counter()
    chain = block_chain(model, trace, cost_model)
    p = plan_chain(list(chain.forward_cost), list(chain.backward_cost),
                   list(chain.input_bytes), list(chain.saved_bytes),
                   budget if budget_bytes is None else int(budget_bytes), planner=planner,
                   must_keep=list(chain.must_keep), transient=True)
    p = replace(p, chain=chain)
    regions = regions_of_tree(trace, chain, p.tree)
    return ModelPlan(p, regions, trace.seconds, time.perf_counter() - t0, trace.method)


def plan_model(model: nn.Module, args: tuple, kwargs: dict, budget: Budget,
               planner: str = "optimal", cost_model: str = "flops",
               budget_bytes: int | None = None) -> ModelPlan:
    """Trace ``model(*args, **kwargs)`` (no activation memory) and plan it."""
    return plan_trace(model, trace_model(model, args, kwargs), budget, planner, cost_model,
                      budget_bytes)


__all__ = ["MIN_INT_BUDGET", "ModelPlan", "check_budget", "format_bytes", "plan_model",
           "plan_trace"]
