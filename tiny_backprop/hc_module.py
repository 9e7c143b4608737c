"""HCModule: a drop-in nn.Module that trains `model` under an activation-memory budget.

Every training step runs the model's own ``forward``. On the first training forward of
an input signature, one forward is traced on fake tensors (no activation memory), the
C planner picks recompute regions for the budget and the plan is cached (LRU, a few
signatures); the runtime applies the regions around the model's module calls. In eval
mode or under ``torch.no_grad`` it simply calls the model.

The wrapper shares the model's parameter, buffer and submodule tables, so
``state_dict()`` has exactly the model's keys, ``load_state_dict`` accepts them, and
``parameters()`` are the user's own tensors; other attributes (``generate``,
``config``) reach the model.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import nn
from torch.utils import _pytree as pytree

from .blocks import COST_MODELS
from .plan import PLANNERS
from .planning import ModelPlan, check_budget, plan_model
from .runtime.accounting import StepStats, Tracker
from .runtime.eager import EagerRuntime

logger = logging.getLogger("tiny_backprop")

Budget = Union[int, float, str]

#: Input signatures whose plans an HCModule keeps by default (least recently used dropped).
DEFAULT_MAX_PLANS = 8


@dataclass
class _Entry:
    plan: ModelPlan
    runtime: EagerRuntime
    check: bool = True  # compare each step with the trace
    retraced: bool = False  # made after a stale plan was dropped


def _leaf_key(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return ("T", tuple(v.shape), v.dtype, v.device, v.requires_grad)
    try:
        hash(v)
    except TypeError:
        return ("O", type(v).__name__)
    return ("V", type(v).__name__, v)


class HCModule(nn.Module):
    """Train `model` holding at most `budget` bytes of activations.

    Args:
        model: the model to wrap; it is not copied and not modified.
        budget: int bytes (>= 4096), a size string ("2GiB", "512MB") or a float in
            (0, 1]: a fraction of the store-all peak (1.0 keeps everything).
        planner: "optimal" (the C DP) or a baseline: "store_all", "per_stage", "sqrt",
            "tree".
        track_memory: count held activation bytes every step for `last_step_stats()`
            (a Python hook per saved tensor). When False (the default) only packs,
            unpacks and recomputations inside regions are counted, and a plan with no
            region runs the plain forward. May be changed between steps.
        cost_model: how ops are costed for planning: "measured" (the default: seconds
            on the device, each distinct FLOP-free op timed once on real tensors of its
            shapes, matmuls at a calibrated FLOP rate; see `tiny_backprop.costs`; under
            torch.distributed with several ranks FLOP costs instead, so that every rank
            plans alike), "flops" (FLOPs, 400 per element for random ops, 1 per output
            element for other ops without a FLOP formula; deterministic, no timing) or
            "elements10" (10 per element).
        cost_cache: with ``cost_model="measured"``, a JSON file keeping the op times
            across processes (None: kept in memory for this HCModule only).
        max_plans: input signatures whose plans are kept (LRU).
        optimizer: with ``budget="auto"``, the optimizer whose state is still to be
            created (subtracted from the free memory).
        reserve: with ``budget="auto"``, bytes to keep free for everything else (data,
            logits, other models).

    ``budget="auto"`` plans, at the first step of each input signature, for the largest
    activation budget that fits the model's device after parameters, gradients, the
    optimizer state, `reserve` and a safety margin (10% of the free bytes + 64 MiB; see
    `tiny_backprop.device_memory`).

    Raises:
        TypeError: model or budget of a wrong type.
        ValueError: a budget that cannot be right (negative, an int under 4096 bytes, a
            fraction outside (0, 1], a numeric string), an unknown planner or cost model,
            parameters on the meta device.
    """

    def __init__(self, model: nn.Module, budget: Budget, *, planner: str = "optimal",
                 track_memory: bool = False, cost_model: str = "measured",
                 max_plans: int = DEFAULT_MAX_PLANS, optimizer: Any = None,
                 reserve: int | None = None, cost_cache: Any = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
        check_budget(budget)
        if planner not in PLANNERS:
            raise ValueError(f"planner must be one of {PLANNERS}, got {planner!r}")
        if cost_model not in COST_MODELS:
            raise ValueError(f"cost_model must be one of {tuple(COST_MODELS)}, got {cost_model!r}")
        if reserve is not None and (isinstance(reserve, bool) or not isinstance(reserve, int)
                                    or reserve < 0):
            raise ValueError(f"reserve must be None or an int >= 0 (bytes), got {reserve!r}")
        if isinstance(max_plans, bool) or not isinstance(max_plans, int) or max_plans < 1:
            raise ValueError(f"max_plans must be an int >= 1, got {max_plans!r}")
        meta = [n for n, p in model.named_parameters() if p.is_meta]
        if meta:
            raise ValueError(
                f"model has {len(meta)} parameters on the meta device (first: {meta[0]!r}); "
                "they hold no values to train. Materialise them first, e.g. "
                "model.to_empty(device='cpu') and load the weights")
        super().__init__()
        # Share the model's tables: same keys, same tensors, .to()/.cuda() reach both.
        self._parameters = model._parameters
        self._buffers = model._buffers
        self._modules = model._modules
        self._non_persistent_buffers_set = model._non_persistent_buffers_set
        object.__setattr__(self, "_wrapped", model)
        object.__setattr__(self, "_cache", OrderedDict())
        object.__setattr__(self, "_current", None)
        object.__setattr__(self, "_tracker", Tracker(counting=bool(track_memory)))
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_logged", set())
        object.__setattr__(self, "_budget", budget)
        self.planner = planner
        self.cost_model = cost_model
        self.max_plans = max_plans
        self.track_memory = bool(track_memory)
        object.__setattr__(self, "_optimizer", optimizer)
        from .costs import CostCache
        object.__setattr__(self, "_costs", CostCache(cost_cache))
        self.reserve = reserve
        self.training = model.training

    # -- module plumbing --------------------------------------------------------

    _TRANSIENT = ("_cache", "_current", "_tracker", "_lock", "_logged", "_costs", "_dropped")

    def __getstate__(self) -> dict:
        """Pickle / deepcopy: the model and settings; plans and counters are re-made."""
        state = {k: v for k, v in self.__dict__.items() if k not in self._TRANSIENT}
        state["_cost_cache_path"] = self._costs.path
        return state

    def __setstate__(self, state: dict) -> None:
        from .costs import CostCache

        path = state.pop("_cost_cache_path", None)
        self.__dict__.update(state)
        object.__setattr__(self, "_cache", OrderedDict())
        object.__setattr__(self, "_current", None)
        object.__setattr__(self, "_tracker", Tracker(counting=bool(self.track_memory)))
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_logged", set())
        object.__setattr__(self, "_costs", CostCache(path))

    @property
    def module(self) -> nn.Module:
        """The wrapped model."""
        return self._wrapped

    @property
    def budget(self) -> Budget:
        """The budget as given; setting it validates it and drops the cached plans."""
        return self._budget

    @budget.setter
    def budget(self, value: Budget) -> None:
        check_budget(value)
        object.__setattr__(self, "_budget", value)
        self._cache.clear()

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get("_wrapped")
            if wrapped is None:
                raise
            return getattr(wrapped, name)

    def train(self, mode: bool = True) -> HCModule:
        """Set train/eval mode on the wrapper and the model."""
        super().train(mode)
        self._wrapped.train(mode)
        return self

    @property
    def plan(self) -> ModelPlan | None:
        """The plan of the latest training forward (None before the first)."""
        return None if self._current is None else self._current.plan

    def last_step_stats(self) -> StepStats:
        """Measured peak, predicted peak and recompute figures of the last step."""
        plan = self.plan
        return self._tracker.stats(None if plan is None else plan.predicted_held_bytes)

    def memory_timeline(self) -> list:
        """Held activation bytes at each event of the last step run with
        ``track_memory=True`` (`tiny_backprop.timeline.TimelineEvent` list; empty when
        the last step was not tracked). ``measured_bytes`` is the accountant's count;
        ``predicted_bytes`` is None except on the final ``step_end`` event, which carries
        the plan's predicted peak of held bytes. Draw it with `tiny_backprop.timeline.plot_timeline`."""
        from .timeline import TimelineEvent

        events = list(self._tracker.events)
        if not events:
            return []
        out = [TimelineEvent(i, k, r, b, None) for i, (k, r, b) in enumerate(events)]
        plan = self.plan
        out.append(TimelineEvent(len(out), "step_end", "", self._tracker.acct.live_bytes,
                                 None if plan is None else plan.predicted_held_bytes))
        return out

    def _log_once(self, key: str, level: int, msg: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            logger.log(level, msg, *args)

    # -- forward ----------------------------------------------------------------

    def _training_kwargs(self, kwargs: dict) -> dict:
        """Turn HF's KV cache off for the training forward (as HF's checkpointing does)."""
        model = self._wrapped
        cfg = getattr(model, "config", None)
        if cfg is None or not getattr(cfg, "use_cache", False) and not kwargs.get("use_cache"):
            return kwargs
        if kwargs.get("use_cache", True) is False:
            return kwargs
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            return kwargs
        if "use_cache" not in params:
            return kwargs
        explicit = "use_cache" in kwargs
        self._log_once("use_cache", logging.WARNING if explicit else logging.INFO,
                       "tiny_backprop: use_cache=True does not fit recomputation in training "
                       "(the cache would grow again on recompute); training forwards of %s "
                       "run with use_cache=False", type(model).__name__)
        return {**kwargs, "use_cache": False}

    def _signature(self, args: tuple, kwargs: dict) -> tuple:
        leaves, spec = pytree.tree_flatten((args, kwargs))
        autocast = tuple((d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
                         for d in ("cpu", "cuda"))
        modes = tuple(m.training for m in self._wrapped.modules())
        return (str(spec), tuple(_leaf_key(v) for v in leaves), autocast, modes)

    def _entry(self, key: tuple, args: tuple, kwargs: dict) -> _Entry:
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                return entry
            retraced = key in self.__dict__.get("_dropped", set())
            plan = self._plan(args, kwargs)
            entry = _Entry(plan, EagerRuntime(self._wrapped, plan.regions, self._tracker),
                           retraced=retraced)
            self._cache[key] = entry
            while len(self._cache) > self.max_plans:
                self._cache.popitem(last=False)
            return entry

    def _planning_costs(self) -> str:
        """The cost model to plan with: `cost_model`, except that measured times become
        FLOP costs under torch.distributed with several ranks (times differ between
        ranks, so their plans could too; FSDP's gathers inside a recomputation must
        match across ranks). Logged once."""
        if self.cost_model != "measured":
            return self.cost_model
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            self._log_once("dist-costs", logging.INFO,
                           "tiny_backprop: torch.distributed with %d ranks: planning on FLOP "
                           "costs, the same on every rank (measured times differ between "
                           "ranks, and so could their plans)", dist.get_world_size())
            return "flops"
        return "measured"

    def _plan(self, args: tuple, kwargs: dict) -> ModelPlan:
        budget = self._budget
        if not (isinstance(budget, str) and budget.strip().lower() == "auto"):
            return plan_model(self._wrapped, args, kwargs, budget, self.planner,
                              self._planning_costs(), cost_cache=self._costs)
        from .device_memory import available_activation_bytes
        from .errors import BudgetError

        model = self._wrapped
        first = next(iter(model.parameters()), None)
        if first is None:
            first = next((v for v in pytree.tree_leaves((args, kwargs))
                          if isinstance(v, torch.Tensor)), None)
        device = first.device if first is not None else torch.device("cpu")
        avail = available_activation_bytes(device, model=model, optimizer=self._optimizer,
                                           reserve=self.reserve)
        try:
            plan = plan_model(model, args, kwargs, avail, self.planner,
                              self._planning_costs(), budget_bytes=avail,
                              cost_cache=self._costs)
        except BudgetError as e:
            raise BudgetError(
                f"budget='auto': {avail} bytes of activations fit on {device} after the "
                f"model, its training state and the margin, but the smallest plan needs "
                f"{e.minimum_bytes} bytes ({e.minimum_bytes - avail} bytes missing): "
                "free memory, use smaller inputs, or give a smaller reserve=",
                minimum_bytes=e.minimum_bytes, budget_bytes=avail) from e
        self._log_once(f"auto:{avail}", logging.INFO,
                       "tiny_backprop: budget='auto' planned for %d bytes on %s", avail, device)
        return plan

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Like ``model(*args, **kwargs)``; in training with grad, under the plan."""
        model = self._wrapped
        if not (model.training and torch.is_grad_enabled()):
            return model(*args, **kwargs)
        kwargs = self._training_kwargs(kwargs)
        key = self._signature(args, kwargs)
        entry = self._entry(key, args, kwargs)
        object.__setattr__(self, "_current", entry)
        tracker = self._tracker
        tracker.counting = self.track_memory
        if self.track_memory:
            tracker.exclude([*model.parameters(), *model.buffers()])
        tracker.start_step()
        if not entry.plan.regions and not self.track_memory:
            return model(*args, **kwargs)  # nothing to recompute: the plain forward
        out, report = entry.runtime.run(args, kwargs, self.track_memory)
        if report.stale and entry.check:
            self._stale(key, entry, report.reason)
        return out

    def _stale(self, key: tuple, entry: _Entry, reason: str) -> None:
        """The step differed from the trace: re-trace next step (once per signature)."""
        if entry.retraced:
            entry.check = False  # a fresh trace differs too: keep this plan
            self._log_once(f"stale2:{reason}", logging.INFO,
                           "tiny_backprop: the eager forward still differs from its trace "
                           "(%s); keeping the plan (it may cost memory or time, gradients "
                           "are exact)", reason)
            return
        self._log_once("stale", logging.INFO,
                       "tiny_backprop: the forward differed from its trace (%s); the step "
                       "was exact, the next step re-traces and re-plans", reason)
        dropped = self.__dict__.setdefault("_dropped", set())
        dropped.add(key)
        with self._lock:
            self._cache.pop(key, None)
