"""Run a plan tree over a jaxpr's stages so that XLA keeps only what the plan keeps.

Each `Region` becomes a ``jax.custom_vjp`` whose forward evaluates the region's
equations and returns only the region's inputs as residuals; its backward first
passes those inputs and the incoming cotangents through one
``jax.lax.optimization_barrier`` (so the recompute can neither be CSE'd with the
forward nor scheduled before the cotangent exists), then re-runs the region's
children under ``jax.vjp``. Nested regions are nested custom_vjps. A `Keep` stage is
plain JAX: autodiff saves its residuals. (docs/integration_jax.md gives the
measurements that chose this formulation over ``jax.checkpoint``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from ..tree import Keep, Node, Region
from ._graph import eval_eqns, read

#: Region formulations (the first is the one used; the others exist for the
#: experiment in benchmarks/jax_lm.py that measures them).
MODES = ("custom_vjp", "custom_vjp_optbarrier", "custom_vjp_nobarrier", "checkpoint")


def _inexact(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jnp.inexact)


def _is_key(x: Any) -> bool:
    return hasattr(x, "dtype") and jnp.issubdtype(x.dtype, jax.dtypes.prng_key)


def _opt_barrier(xs: tuple[Any, ...], gs: tuple[Any, ...]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``lax.optimization_barrier`` over inputs and cotangents (kept to measure it: XLA
    CPU removes it before CSE, so it does not stop the recompute being merged)."""
    flat = list(xs) + list(gs)
    pos = [i for i, v in enumerate(flat) if hasattr(v, "dtype") and not _is_key(v)
           and v.dtype != jax.dtypes.float0]
    if pos:
        out = jax.lax.optimization_barrier([flat[i] for i in pos])
        for i, v in zip(pos, out):
            flat[i] = v
    return tuple(flat[: len(xs)]), tuple(flat[len(xs):])


def _barrier(xs: tuple[Any, ...], gs: tuple[Any, ...],
             skip: tuple[bool, ...] = ()) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Region inputs that XLA sees as new values depending on the cotangents.

    XLA CPU (jax 0.10) drops ``optimization_barrier`` before CSE, so a recompute fed by
    the barrier is merged with the forward and nothing is saved (measured). Instead each
    input is offset by a zero that XLA cannot fold: ``0 * s``, with ``s`` one element of
    one cotangent (XLA keeps ``x * 0`` for floats: NaN * 0 is NaN). The recompute then
    depends on the cotangent (it runs in the backward, after it) and is not CSE'd.
    Integer and key inputs get the same zero cast to their dtype (a dropout mask drawn
    from a key would otherwise be CSE'd and held from forward to backward). If that
    cotangent element is inf or NaN the recompute reads garbage; the gradient is then
    not finite anyway. ``skip[i]`` leaves input i as is (float inputs of the whole
    function, i.e. parameters: offsetting them would copy every weight).
    """
    seed = None
    for g in gs:
        if hasattr(g, "dtype") and jnp.issubdtype(g.dtype, jnp.inexact) and g.size:
            seed = jnp.real(g.reshape(-1)[0]) * 0
            break
    if seed is None:
        return xs, gs
    out: list[Any] = []
    for i, x in enumerate(xs):
        if not hasattr(x, "dtype") or x.dtype == jax.dtypes.float0 or (i < len(skip) and skip[i]):
            out.append(x)
        elif _is_key(x):
            impl = jax.random.key_impl(x)
            kd = jax.random.key_data(x)
            out.append(jax.random.wrap_key_data(kd + seed.astype(kd.dtype), impl=impl))
        elif x.dtype == jnp.bool_:
            out.append(jnp.logical_or(x, seed != 0))
        else:
            out.append(x + seed.astype(x.dtype))
    return tuple(out), gs


class Program:
    """A closed jaxpr cut into stages (lists of equation indices), run under a plan tree."""

    def __init__(self, closed: Any, stage_eqns: Sequence[Sequence[int]], tree: Sequence[Node],
                 mode: str = "custom_vjp") -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.closed = closed
        self.mode = mode
        jp = closed.jaxpr
        eqns = list(jp.eqns)
        self.stages = [[eqns[k] for k in idx] for idx in stage_eqns]
        self.tree = tuple(tree)
        n = len(self.stages)
        self._def_stage: dict[Any, int] = {}
        self._last_use: dict[Any, int] = {}
        for i, st in enumerate(self.stages):
            for eqn in st:
                for v in eqn.invars:
                    if not hasattr(v, "val"):
                        self._last_use[v] = max(self._last_use.get(v, -1), i)
                for v in eqn.outvars:
                    self._def_stage[v] = i
        for v in jp.outvars:
            if not hasattr(v, "val"):
                self._last_use[v] = n  # lives to the end
        self._fns: dict[tuple[int, int], Any] = {}

    def io(self, start: int, end: int) -> tuple[list[Any], list[Any]]:
        """Vars a stage range reads from outside, and the vars it defines used after it."""
        ins: list[Any] = []
        seen: set[Any] = set()
        outs: list[Any] = []
        for i in range(start, end):
            for eqn in self.stages[i]:
                for v in eqn.invars:
                    if hasattr(v, "val") or v in seen:
                        continue
                    d = self._def_stage.get(v, -1)
                    if d < start:
                        seen.add(v)
                        ins.append(v)
                for v in eqn.outvars:
                    if self._last_use.get(v, -1) >= end:
                        outs.append(v)
        return ins, outs

    def __call__(self, *flat_args: Any) -> list[Any]:
        jp = self.closed.jaxpr
        env: dict[Any, Any] = dict(zip(jp.constvars, self.closed.consts))
        env.update(zip(jp.invars, flat_args))
        self.run_nodes(self.tree, env)
        return [read(env, v) for v in jp.outvars]

    def run_nodes(self, nodes: Sequence[Node], env: dict[Any, Any]) -> None:
        for node in nodes:
            if isinstance(node, Keep):
                eval_eqns(self.stages[node.stage], env)
            else:
                ins, outs = self.io(node.start, node.end)
                vals = self._region(node)(*[env[v] for v in ins])
                env.update(zip(outs, vals))

    def _region(self, r: Region) -> Any:
        key = (r.start, r.end)
        fn = self._fns.get(key)
        if fn is None:
            fn = self._fns[key] = self._make_region(r)
        return fn

    def _make_region(self, r: Region) -> Any:
        ins, outs = self.io(r.start, r.end)
        stages = self.stages[r.start:r.end]
        top = set(self.closed.jaxpr.invars) | set(self.closed.jaxpr.constvars)
        skip = tuple(v in top and jnp.issubdtype(v.aval.dtype, jnp.inexact) for v in ins)
        if all(skip):  # nothing else to hang the dependency on
            skip = ()

        def plain(xs: Sequence[Any]) -> tuple[Any, ...]:
            env = dict(zip(ins, xs))
            for st in stages:
                eval_eqns(st, env)
            return tuple(env[v] for v in outs)

        def replay(*xs: Any) -> tuple[Any, ...]:
            env = dict(zip(ins, xs))
            self.run_nodes(r.children, env)
            return tuple(env[v] for v in outs)

        if self.mode == "checkpoint":
            return jax.checkpoint(replay, policy=jax.checkpoint_policies.nothing_saveable)

        mode = self.mode

        @jax.custom_vjp
        def region(*xs: Any) -> tuple[Any, ...]:
            return plain(xs)

        def fwd(*xs: Any) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
            return plain(xs), xs

        def bwd(xs: tuple[Any, ...], gs: tuple[Any, ...]) -> tuple[Any, ...]:
            if mode == "custom_vjp":
                xs, gs = _barrier(xs, gs, skip)
            elif mode == "custom_vjp_optbarrier":
                xs, gs = _opt_barrier(xs, gs)
            _, vjp_fn = jax.vjp(replay, *xs)
            cts = vjp_fn(tuple(gs))
            return tuple(ct if _inexact(x) else None for x, ct in zip(xs, cts))

        region.defvjp(fwd, bwd)
        return region
