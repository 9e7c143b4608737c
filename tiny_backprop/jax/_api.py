"""`height_compressed_grad` / `height_compressed_value_and_grad` / `plan` for JAX."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Union

import jax

from .. import chain as _chain
from ..plan import PLANNERS, Budget, Plan, plan_chain
from ._graph import JaxprGraph, build_graph
from ._program import Program

#: Default cap on stages of a jaxpr chain (the planner's DP is O(L^2..L^3 * slots)).
DEFAULT_MAX_STAGES = 64

Argnums = Union[int, Sequence[int]]

_CONTROL_FLOW_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerBoolConversionError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)


class DataDependentControlFlowError(TypeError):
    """`fun` branches or loops in Python on a traced value; it cannot be traced."""


@dataclass(frozen=True)
class Traced:
    """A function traced once: its jaxpr graph, stage split and plan."""

    graph: JaxprGraph
    stage_eqns: list[list[int]]
    plan: Plan
    out_tree: Any

    def program(self, mode: str = "custom_vjp") -> Program:
        return Program(self.graph.closed, self.stage_eqns, self.plan.tree, mode=mode)


def _check_budget(budget: Any) -> None:
    if isinstance(budget, bool) or not isinstance(budget, (numbers.Real, str)):
        raise TypeError(
            "budget must be int bytes, a size string like '2GiB' or a float fraction of the "
            f"store-all peak, not {type(budget).__name__}"
        )


def _check_argnums(argnums: Any) -> tuple[int, ...]:
    items = argnums if isinstance(argnums, (tuple, list)) else (argnums,)
    if isinstance(argnums, (tuple, list)) and not items:
        raise ValueError("argnums must name at least one argument, got ()")
    for a in items:
        if isinstance(a, bool) or not isinstance(a, numbers.Integral):
            raise TypeError(f"argnums must be an int or a tuple of ints, got {argnums!r}")
    return tuple(int(a) for a in items)


def _check_argnums_range(argnums: tuple[int, ...], nargs: int) -> None:
    for a in argnums:
        if not -nargs <= a < nargs:
            raise ValueError(
                f"argnums {a} is out of range for a function called with {nargs} positional "
                "argument(s)"
            )


#: Plans remembered per wrapper (a wrapper re-traces `fun` on every call, as jax.grad
#: does, but re-plans only when the jaxpr's text changes).
_CACHE_SIZE = 8


def trace(fun: Callable[..., Any], args: Sequence[Any], budget: Budget, *,
          planner: str = "optimal", max_stages: int = DEFAULT_MAX_STAGES,
          slots: int = 512, cache: dict[Any, Any] | None = None,
          fusion_aware: bool = True) -> Traced:
    """Trace `fun(*args)` on abstract values, build the chain and plan it (no memory used).

    ``cache``: a dict owned by the caller; plans are reused for an identical jaxpr.
    ``fusion_aware``: see `build_graph` (False only to measure what it changes).
    """
    _check_budget(budget)
    if not isinstance(planner, str) or planner not in PLANNERS:
        raise ValueError(f"planner must be one of {', '.join(PLANNERS)}; got {planner!r}")
    leaves, in_tree = jax.tree_util.tree_flatten(args)
    abstract = [jax.ShapeDtypeStruct(jax.numpy.shape(x), jax.numpy.result_type(x))
                if not isinstance(x, jax.ShapeDtypeStruct) else x for x in leaves]

    def flat_fun(*flat: Any) -> Any:
        return fun(*jax.tree_util.tree_unflatten(in_tree, list(flat)))

    try:
        closed, out_shape = jax.make_jaxpr(flat_fun, return_shape=True)(*abstract)
    except _CONTROL_FLOW_ERRORS as exc:
        raise DataDependentControlFlowError(
            "tiny_backprop.jax traces `fun` on abstract values, and `fun` uses a traced value "
            "in Python control flow (if/while/int()/bool()); write that control flow with "
            "jax.lax.cond, jax.lax.while_loop or jax.lax.fori_loop (or jnp.where), or mark "
            f"the argument static. JAX said: {type(exc).__name__}"
        ) from exc
    n_eqn = len(closed.jaxpr.eqns)
    if n_eqn == 0:
        raise ValueError("fun has no operations to plan (its jaxpr is empty)")
    out_tree = jax.tree_util.tree_structure(out_shape)
    key = None
    if cache is not None:
        key = (str(closed.jaxpr), repr(budget), planner, int(max_stages), int(slots),
               bool(fusion_aware))
        hit = cache.get(key)
        if hit is not None:
            ir, n_inputs, stage_eqns, p = hit
            graph = JaxprGraph(closed=closed, ir=ir, n_inputs=n_inputs, var_node={})
            return Traced(graph=graph, stage_eqns=stage_eqns, plan=p, out_tree=out_tree)
    graph = build_graph(closed, fusion_aware=fusion_aware)
    ir = graph.ir
    sc = _chain.stage_chain(ir, max(1, min(int(max_stages), n_eqn)))
    stage_eqns: list[list[int]] = []
    for start, end in sc.bounds:
        stage_eqns.append(
            [k - graph.n_inputs for k in sc.topo_order[start:end] if k >= graph.n_inputs]
        )
    p = plan_chain(
        sc.forward_cost, sc.backward_cost, sc.input_bytes, sc.saved_bytes, budget,
        planner=planner, slots=slots, must_keep=sc.never_recompute,
        live_intervals=sc.live_intervals, transient=True,
    )
    p = replace(p, chain=sc)
    if cache is not None:
        if len(cache) >= _CACHE_SIZE:
            cache.pop(next(iter(cache)))
        cache[key] = (ir, graph.n_inputs, stage_eqns, p)
    return Traced(graph=graph, stage_eqns=stage_eqns, plan=p, out_tree=out_tree)


def plan(fun: Callable[..., Any], *args: Any, budget: Budget = 0.5,
         planner: str = "optimal", max_stages: int = DEFAULT_MAX_STAGES) -> Plan:
    """The plan `height_compressed_grad(fun, budget=...)` would apply to `fun(*args)`.

    Args may be arrays or `jax.ShapeDtypeStruct`s (nothing is computed). The Plan's
    ``peak_bytes`` is the planner's prediction of the activation bytes held at once;
    ``.chain`` is the stage chain (bytes and costs per stage).
    """
    return trace(fun, args, budget, planner=planner, max_stages=max_stages).plan


def _make(fun: Callable[..., Any], budget: Budget, argnums: Argnums, has_aux: bool,
          planner: str, max_stages: int, value: bool, mode: str = "custom_vjp") -> Callable[..., Any]:
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    _check_budget(budget)
    nums = _check_argnums(argnums)
    if not isinstance(has_aux, bool):
        raise TypeError(f"has_aux must be a bool, got {type(has_aux).__name__}")
    if not isinstance(planner, str) or planner not in PLANNERS:
        raise ValueError(f"planner must be one of {', '.join(PLANNERS)}; got {planner!r}")
    if isinstance(max_stages, bool) or not isinstance(max_stages, numbers.Integral) \
            or max_stages < 1:
        raise ValueError(f"max_stages must be an int >= 1, got {max_stages!r}")

    cache: dict[Any, Any] = {}

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _check_argnums_range(nums, len(args))
        f = functools.partial(fun, **kwargs) if kwargs else fun  # kwargs: not differentiated
        t = trace(f, args, budget, planner=planner, max_stages=max_stages, cache=cache)
        prog = t.program(mode)

        def replayed(*a: Any) -> Any:
            outs = prog(*jax.tree_util.tree_leaves(a))
            return jax.tree_util.tree_unflatten(t.out_tree, outs)

        transform = jax.value_and_grad if value else jax.grad
        an = nums[0] if isinstance(argnums, numbers.Integral) else nums
        return transform(replayed, argnums=an, has_aux=has_aux)(*args)

    wrapped.__name__ = f"height_compressed_{'value_and_' if value else ''}grad"
    wrapped.__doc__ = fun.__doc__
    return wrapped


def height_compressed_grad(fun: Callable[..., Any], budget: Budget = 0.5, argnums: Argnums = 0,
                           has_aux: bool = False, *, planner: str = "optimal",
                           max_stages: int = DEFAULT_MAX_STAGES) -> Callable[..., Any]:
    """Like `jax.grad(fun, argnums, has_aux)`, holding at most `budget` activation bytes.

    Args:
        fun: a function of arrays/pytrees returning a scalar (or ``(scalar, aux)``).
        budget: int bytes, a size string ("2GiB", "512MB") or a float in (0, 1]: that
            fraction of the store-all peak of `fun`'s activations.
        argnums, has_aux: as in `jax.grad`.
        planner: one of tiny_backprop.plan.PLANNERS ("optimal" is the C DP).
        max_stages: at most this many stages in the chain cut from the jaxpr.

    Works under `jax.jit` (tracing and planning happen at trace time, on abstract
    values). Raises BudgetError (with ``.minimum_bytes``) when nothing fits,
    DataDependentControlFlowError (a TypeError) for Python control flow on traced values.
    """
    return _make(fun, budget, argnums, has_aux, planner, max_stages, value=False)


def height_compressed_value_and_grad(fun: Callable[..., Any], budget: Budget = 0.5,
                                     argnums: Argnums = 0, has_aux: bool = False, *,
                                     planner: str = "optimal",
                                     max_stages: int = DEFAULT_MAX_STAGES) -> Callable[..., Any]:
    """Like `jax.value_and_grad`; see `height_compressed_grad` for the arguments."""
    return _make(fun, budget, argnums, has_aux, planner, max_stages, value=True)
