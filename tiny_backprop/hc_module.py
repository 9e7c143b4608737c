"""HCModule: a drop-in nn.Module that trains `model` under an activation-memory budget.

On the first training forward for an input signature it captures the model, plans a
tree of recompute regions for the budget and caches both; later forwards with the same
signature run the cached plan. In eval mode or under ``torch.no_grad`` it simply calls
the model.

The wrapper shares the model's parameter, buffer and submodule tables, so
``state_dict()`` has exactly the model's keys, ``load_state_dict`` accepts them, and
``parameters()`` are the user's own tensors.
"""

from __future__ import annotations

import logging
import numbers
from dataclasses import dataclass, replace
from typing import Any, Union

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .errors import CaptureError
from .runtime.accounting import StepStats, Tracker
from .runtime.interpreter import Executor
from .tree import Region

logger = logging.getLogger("tiny_backprop")

Budget = Union[int, float, str]
PLANNERS = ("optimal", "store_all", "per_stage", "sqrt", "tree")
FALLBACKS = (None, "per_block")


@dataclass
class _Prepared:
    executor: Any
    plan: Any
    captured: Any


def _capture_model(model: nn.Module, args: tuple, kwargs: dict) -> Any:
    from .capture.api import RUNTIME_PATHS, capture_in_order

    return capture_in_order(model, args, kwargs, RUNTIME_PATHS)


def _make_plan(ir: Any, budget: Budget, planner: str, max_stages: int | None) -> Any:
    from .plan import plan

    return plan(ir, budget, planner, max_stages=max_stages)


def _make_block_plan(profile: Any, budget: Budget, planner: str) -> Any:
    """Plan the per-block chain ``[pre] + blocks + [post]`` (pre and post always kept)."""
    from .plan import plan_chain

    p = plan_chain(profile.forward_cost, profile.backward_cost, profile.input_bytes,
                   profile.saved_bytes, budget, planner=planner, must_keep=profile.must_keep,
                   transient=True)
    return replace(p, chain=profile)


def _leaf_key(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ("T", tuple(v.shape), v.dtype, v.device, v.requires_grad)
    try:
        hash(v)
    except TypeError:
        return ("O", type(v).__name__, id(v))
    return ("V", type(v).__name__, v)


class HCModule(nn.Module):
    """Train `model` with at most `budget` bytes of held activations.

    Args:
        model: the model to wrap; it is not copied and not modified.
        budget: int bytes, a size string ("2GiB", "512MB") or a float in (0, 1], a
            fraction of the store-all peak.
        planner: "optimal" (the C DP) or a baseline: "store_all", "per_stage", "sqrt",
            "tree".
        fallback: None (raise CaptureError when the model cannot be captured) or
            "per_block": plan over calls of the model's repeated blocks (the children of
            its largest nn.ModuleList/nn.Sequential, e.g. ``model.layers``), one stage
            per block, costs and bytes measured by one profiled forward; recompute
            regions then span whole block calls. Logged once (logger "tiny_backprop").
        max_stages: most stages of the chain (None = the graph analysis default);
            not used by the per-block fallback (one stage per block).
        track_memory: count held activation bytes on every step for
            `last_step_stats()` (costs a Python hook per saved tensor). When False (the
            default) nothing is counted but recomputations: `last_step_stats()` reports
            no measured peak, and when the plan recomputes nothing (budget at or above
            the store-all peak) the step is the plain model's forward with no overhead.
            May be changed between steps.

    Raises:
        TypeError: budget/model of a wrong type.
        ValueError: unknown planner or fallback.
    """

    def __init__(self, model: nn.Module, budget: Budget, *, planner: str = "optimal",
                 fallback: str | None = None, max_stages: int | None = None,
                 track_memory: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        if isinstance(budget, bool) or not isinstance(budget, (numbers.Real, str)):
            raise TypeError(
                "budget must be int bytes, a size string like '2GiB' or a float fraction "
                f"of the store-all peak in (0, 1], not {type(budget).__name__}")
        if planner not in PLANNERS:
            raise ValueError(f"planner must be one of {PLANNERS}, got {planner!r}")
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be None or 'per_block', got {fallback!r}")
        super().__init__()
        # Share the model's tables: same keys, same tensors, .to()/.cuda() reach both.
        self._parameters = model._parameters
        self._buffers = model._buffers
        self._modules = model._modules
        self._non_persistent_buffers_set = model._non_persistent_buffers_set
        object.__setattr__(self, "_wrapped", model)
        object.__setattr__(self, "_cache", {})
        object.__setattr__(self, "_current", None)
        object.__setattr__(self, "_tracker", Tracker())
        object.__setattr__(self, "_stale_exclusions", True)
        self.budget = budget
        self.planner = planner
        self.fallback = fallback
        self.max_stages = max_stages
        self.track_memory = bool(track_memory)
        object.__setattr__(self, "_measured", False)  # whether the last step was counted
        object.__setattr__(self, "_fell_back", False)  # the per_block fallback was logged
        self.training = model.training

    # -- module plumbing --------------------------------------------------------

    @property
    def module(self) -> nn.Module:
        """The wrapped model."""
        return self._wrapped

    def _apply(self, fn: Any, recurse: bool = True) -> HCModule:
        out = super()._apply(fn, recurse)
        object.__setattr__(self, "_stale_exclusions", True)  # params may have moved
        return out

    def train(self, mode: bool = True) -> HCModule:
        """Set train/eval mode on the wrapper and the model."""
        super().train(mode)
        self._wrapped.train(mode)
        return self

    @property
    def plan(self) -> Any:
        """The plan of the latest training forward (None before the first)."""
        return None if self._current is None else self._current.plan

    def last_step_stats(self) -> StepStats:
        """Measured peak, predicted peak and recompute figures of the last step."""
        plan = self.plan
        predicted = None if plan is None else int(plan.peak_bytes)
        stats = self._tracker.stats(predicted)
        if not self._measured:  # a plain forward (no recompute, track_memory=False)
            stats = replace(stats, measured_peak_bytes=None)
        return stats

    # -- forward ----------------------------------------------------------------

    def _signature(self, args: tuple, kwargs: dict) -> tuple:
        leaves, spec = pytree.tree_flatten((args, kwargs))
        autocast = tuple((d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
                         for d in ("cpu", "cuda"))
        return (self.training, str(spec), tuple(_leaf_key(v) for v in leaves), autocast)

    def _prepare(self, args: tuple, kwargs: dict) -> _Prepared:
        model = self._wrapped
        try:
            captured = _capture_model(model, args, kwargs)
        except CaptureError as err:
            if self.fallback != "per_block":
                raise
            return self._prepare_per_block(args, kwargs, err)
        plan = _make_plan(captured.ir, self.budget, self.planner, self.max_stages)
        chain = plan.chain
        never = list(getattr(chain, "never_recompute", []) or [])
        executor = Executor(captured, model, chain.bounds, plan.tree,
                            topo_order=chain.topo_order, never_recompute=never or None,
                            tracker=self._tracker)
        return _Prepared(executor, plan, captured)

    def _prepare_per_block(self, args: tuple, kwargs: dict, err: CaptureError) -> _Prepared:
        """Plan over the model's repeated block calls (``fallback="per_block"``)."""
        from .capture.blocks import find_blocks, profile_blocks
        from .runtime.per_block import BlockExecutor

        model = self._wrapped
        try:
            container, names, blocks = find_blocks(model)
        except CaptureError as e:
            raise CaptureError(f"{e}\n\nGraph capture failed first:\n{err}") from err
        if not self._fell_back:
            logger.warning(
                "tiny_backprop: %s could not be captured as a graph; falling back to "
                "planning over calls of its %d blocks in %s (fallback='per_block')",
                type(model).__name__, len(blocks), container or "the model")
            object.__setattr__(self, "_fell_back", True)
        profile = profile_blocks(model, args, kwargs, container, names, blocks)
        plan = _make_block_plan(profile, self.budget, self.planner)
        executor = BlockExecutor(model, profile.blocks, plan.tree, self._tracker,
                                 profile.mutating)
        return _Prepared(executor, plan, profile)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Like ``model(*args, **kwargs)``; in training with grad, under the plan."""
        if not (self.training and torch.is_grad_enabled()):
            return self._wrapped(*args, **kwargs)
        key = self._signature(args, kwargs)
        prepared = self._cache.get(key)
        if prepared is None:
            prepared = self._prepare(args, kwargs)
            self._cache[key] = prepared
        if self._stale_exclusions or prepared is not self._current:
            prepared.executor.refresh_exclusions()
            object.__setattr__(self, "_stale_exclusions", False)
        object.__setattr__(self, "_current", prepared)
        self._tracker.start_step()
        if not self.track_memory and not any(isinstance(n, Region) for n in prepared.plan.tree):
            # nothing to recompute: the plan is the model's own forward
            object.__setattr__(self, "_measured", False)
            return self._wrapped(*args, **kwargs)
        object.__setattr__(self, "_measured", self.track_memory)
        prepared.executor.track = self.track_memory
        return prepared.executor(*args, **kwargs)
