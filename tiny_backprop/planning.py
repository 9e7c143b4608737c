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
from .errors import BudgetError
from .options import (
    DISPATCH_COST,
    BlockOption,
    KeepItem,
    block_options,
    choose,
    items_for,
    top_kept_blocks,
    worth_keeping,
)
from .plan import PLANNERS, Plan, format_bytes, parse_budget, plan_chain
from .runtime.spec import RuntimePlan
from .scratch import estimate_scratch
from .trace import Trace, trace_model
from .tree import Node, Region

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
        kept_ops, kept_bytes: op outputs the regions keep, and their bytes.
    """

    chain_plan: Plan
    regions: RuntimePlan
    trace_seconds: float
    plan_seconds: float
    trace_method: str
    kept_ops: int = 0
    kept_bytes: int = 0

    @property
    def chain(self) -> BlockChain:
        return self.chain_plan.chain

    @property
    def predicted_peak_bytes(self) -> int:
        """Peak activation bytes the planner predicts (bytes): the held bytes plus, at
        each stage's backward, its gradients in flight (`BlockChain.working_bytes`).
        The budget bounds this."""
        return int(self.chain_plan.peak_bytes)

    @property
    def predicted_held_bytes(self) -> int:
        """Peak of the activation bytes held (saved tensors, boundaries, kept outputs)
        that the planner predicts, without the backward's gradients in flight (bytes):
        what the runtime's accountant measures."""
        return int(self.chain_plan.held_peak_bytes)

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
                 f"{self.trace_seconds * 1e3:.0f} ms, planned in {self.plan_seconds * 1e3:.1f} ms"
                 + (f"; regions keep {self.kept_ops} op outputs ({format_bytes(self.kept_bytes)})"
                    if self.kept_ops else "")]
        for r in self.regions.regions:
            lines.append(f"  region {r.label()}" + (f" ({len(r.children)} nested)"
                                                    if r.children else ""))
        return "\n".join(lines)


def _chain_plan(chain: BlockChain, budget: Budget | int, planner: str,
                options: list[BlockOption] | None = None) -> Plan:
    return plan_chain(list(chain.forward_cost), list(chain.backward_cost),
                      list(chain.input_bytes), list(chain.saved_bytes), budget,
                      planner=planner, must_keep=list(chain.must_keep), transient=True,
                      live_intervals=list(chain.live_intervals) or None,
                      options=[(o.stage, o.nbytes, o.save, o.overlap)
                               for o in options or ()] or None,
                      working_bytes=list(chain.working_bytes) or None,
                      cut_before=list(chain.cut_before) or None)


#: Shares of the slack (budget minus the chain's minimum) that the keep-set search
#: gives up at the block level so that kept op outputs can use them.
SLACK_SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _slack_search(trace: Trace, chain: BlockChain, budget_bytes: int, weight: float,
                  base: Plan, costs: list[float] | None, per_op: float
                  ) -> tuple[Plan, list[KeepItem]]:
    """The second candidate of level 2, for regions over several blocks (the DP's
    options cover one-block regions): chain plans at budgets lowered by shares of the
    slack, the bytes left spent on kept op outputs of every block the top-level regions
    recompute (one exact knapsack over all of them). Its peak counts every kept byte as
    held at once; returns the cheapest (plan, kept) found."""
    best: tuple[float, Plan, list[KeepItem], float] = (base.total_cost, base, [], 0.0)
    per_stage: dict[int, list[KeepItem]] = {}
    try:
        minimum = int(_chain_plan(chain, 0, "optimal").peak_bytes)
    except BudgetError as e:
        minimum = e.minimum_bytes
    for share in SLACK_SHARES:
        b = int(budget_bytes - share * max(0, budget_bytes - minimum))
        try:
            p = base if share == 0.0 else _chain_plan(chain, max(b, minimum), "optimal")
        except BudgetError:
            continue
        if p.peak_bytes > budget_bytes:
            continue
        items = items_for(trace, chain, top_kept_blocks(p.tree), weight, costs, per_stage)
        kept = choose(items, budget_bytes - int(p.peak_bytes))
        kept, net = worth_keeping(trace, chain, p.tree, kept, per_op)
        total = p.total_cost - net
        if total < best[0] - 1e-9 * max(1.0, abs(best[0])):
            best = (total, p, kept, net)
    _, p, kept, net = best
    if kept:
        extra = sum(k.nbytes for k in kept)
        p = replace(p, peak_bytes=int(p.peak_bytes) + extra,
                    held_peak_bytes=int(p.held_peak_bytes) + extra,
                    total_cost=p.total_cost - net,
                    recompute_cost=max(0.0, p.recompute_cost - net))
    return p, kept


def _kept_items(tree: tuple[Node, ...], options: list[BlockOption]) -> list[KeepItem]:
    """The op outputs kept by the options the plan's top-level regions chose."""
    per_stage: dict[int, list[BlockOption]] = {}
    for o in options:
        per_stage.setdefault(o.stage, []).append(o)
    out: list[KeepItem] = []
    for node in tree:
        if isinstance(node, Region) and node.option >= 0:
            out.extend(per_stage[node.start][node.option].items)
    return out


def plan_trace(model: nn.Module, trace: Trace, budget: Budget, planner: str = "optimal",
               cost_model: str = "flops", budget_bytes: int | None = None,
               keep_ops: bool = True, cost_cache: Any = None) -> ModelPlan:
    """Plan a trace for `budget` (or exactly `budget_bytes` when given).

    ``cost_model="measured"`` times the trace's ops on the device (`tiny_backprop.costs`,
    cached in `cost_cache`); costs are then seconds. Whatever the cost model, the
    scratch memory of CPU convolutions is estimated from their sizes
    (`tiny_backprop.scratch.estimate_scratch`) and counted in the working bytes. With ``planner="optimal"`` the
    plain chain and the nested one (blocks recomputing large sub-module calls apart) are
    both planned and the cheaper plan is kept.
    With ``planner="optimal"`` and `keep_ops`, regions may also keep chosen op outputs
    (`tiny_backprop.options`): the plan's predicted peak then includes every kept byte
    and its recompute cost excludes the kept ops.
    """
    if planner not in PLANNERS:
        raise ValueError(f"planner must be one of {PLANNERS}, got {planner!r}")
    if cost_model not in COST_MODELS:
        raise ValueError(f"cost_model must be one of {tuple(COST_MODELS)}, got {cost_model!r}")
    t0 = time.perf_counter()
    costs = None
    if cost_model == "measured":
        from .costs import measure
        costs = measure(trace, cost_cache)
    weight = COST_MODELS[cost_model]
    asked = budget if budget_bytes is None else int(budget_bytes)
    scratch = estimate_scratch(trace)
    chains = [block_chain(model, trace, cost_model, costs, scratch=scratch)]
    if planner == "optimal":  # also: blocks recomputing their big sub-modules apart
        alt = block_chain(model, trace, cost_model, costs, nested=True, scratch=scratch)
        if any(alt.nested):
            chains.append(alt)
    if len(chains) > 1 and not isinstance(asked, int):
        # a fraction or size string means the same bytes for every variant: the plain
        # chain's store-all peak is the model's
        full = _chain_plan(chains[0], 1.0, "store_all").peak_bytes
        asked = parse_budget(asked, int(full))
    best: tuple[float, Plan, BlockChain, list[KeepItem]] | None = None
    error: BudgetError | None = None
    for chain in chains:
        try:
            p = _chain_plan(chain, asked, planner)
        except BudgetError as e:
            if error is None or e.minimum_bytes < error.minimum_bytes:
                error = e
            continue
        kept: list[KeepItem] = []
        if keep_ops and planner == "optimal" and p.recompute_cost > 0:
            # level 2 with level 1's options: the chain DP picks a keep set per block
            target, plain_plan = int(p.budget_bytes), p
            opts = block_options(trace, chain, weight, costs, DISPATCH_COST[cost_model])
            if opts:
                p = _chain_plan(chain, target, planner, opts)
                kept = _kept_items(p.tree, opts)
            alt, alt_kept = _slack_search(trace, chain, target, weight, plain_plan, costs,
                                          DISPATCH_COST[cost_model])
            if alt.total_cost < p.total_cost - 1e-9 * max(1.0, abs(p.total_cost)):
                p, kept = replace(alt, budget_bytes=target), alt_kept
        if best is None or p.total_cost < best[0] - 1e-9 * max(1.0, abs(best[0])):
            best = (p.total_cost, p, chain, kept)
    if best is None:
        assert error is not None
        raise error
    _, p, chain, kept = best
    # recompute cost against the plain model's one forward + backward (a nested chain's
    # backward_cost already includes its sub-regions' second forward)
    plain = chains[0]
    base = sum(plain.forward_cost) + sum(plain.backward_cost)
    p = replace(p, chain=chain, recompute_cost=max(0.0, p.total_cost - base))
    regions = regions_of_tree(trace, chain, p.tree, {k.op for k in kept})
    return ModelPlan(p, regions, trace.seconds, time.perf_counter() - t0, trace.method,
                     len(kept), sum(k.nbytes for k in kept))


def plan_model(model: nn.Module, args: tuple, kwargs: dict, budget: Budget,
               planner: str = "optimal", cost_model: str = "flops",
               budget_bytes: int | None = None, cost_cache: Any = None) -> ModelPlan:
    """Trace ``model(*args, **kwargs)`` (no activation memory) and plan it."""
    return plan_trace(model, trace_model(model, args, kwargs), budget, planner, cost_model,
                      budget_bytes, cost_cache=cost_cache)


__all__ = ["MIN_INT_BUDGET", "ModelPlan", "check_budget", "format_bytes", "plan_model",
           "plan_trace"]
