"""A jaxpr as the project's graph IR: one node per top-level equation.

Sizes are bytes from the avals; costs are FLOPs for ``dot_general`` and convolutions
and output elements for every other primitive (sub-jaxprs such as ``pjit``, ``scan``
or ``custom_jvp_call`` bodies are summed, a ``scan`` body times its length, a
``while`` body once: its trip count is unknown). What the backward of an equation
saves comes from JAX itself: the residuals of ``jax.vjp`` of that one equation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.extend import core as jcore

from ..ir import (
    FLAG_ALIAS,
    FLAG_INPUT,
    FLAG_OUTPUT,
    FLAG_OUTPUT_SAVED,
    FLAG_PARAM,
    GraphIR,
    NodeInfo,
)

#: Primitives whose output XLA lays out as a bitcast of the input (no new buffer).
_ALIAS_PRIMS = frozenset({"reshape", "squeeze", "expand_dims"})


def aval_bytes(aval: Any) -> int:
    """Bytes of one abstract value (0 for tokens and other non-arrays)."""
    shape = getattr(aval, "shape", None)
    dtype = getattr(aval, "dtype", None)
    if shape is None or dtype is None:
        return 0
    try:
        itemsize = np.dtype(dtype).itemsize
    except TypeError:  # extended dtypes (PRNG keys): the key data, uint32 words
        itemsize = int(getattr(dtype, "itemsize", 8) or 8)
    return int(math.prod(shape)) * int(itemsize)


def _size(aval: Any) -> int:
    shape = getattr(aval, "shape", None)
    return int(math.prod(shape)) if shape is not None else 0


def _sub_jaxprs(params: dict[str, Any]) -> list[Any]:
    out = []
    for v in params.values():
        for item in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(item, jcore.ClosedJaxpr):
                out.append(item.jaxpr)
            elif isinstance(item, jcore.Jaxpr):
                out.append(item)
    return out


def eqn_cost(eqn: Any) -> float:
    """Forward cost of one equation: FLOPs for matmuls/convs, else output elements."""
    name = eqn.primitive.name
    if name == "dot_general":
        (contract_l, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval
        k = math.prod(lhs.shape[d] for d in contract_l) if contract_l else 1
        return 2.0 * _size(eqn.outvars[0].aval) * k
    if name == "conv_general_dilated":
        # rhs is [O, I/groups, *window] in its own layout: MACs per output element
        # are prod(rhs) / O.
        rhs = eqn.invars[1].aval
        dn = eqn.params["dimension_numbers"]
        out_feat = rhs.shape[dn.rhs_spec[0]] if dn is not None else rhs.shape[0]
        return 2.0 * _size(eqn.outvars[0].aval) * math.prod(rhs.shape) / max(1, out_feat)
    subs = _sub_jaxprs(eqn.params)
    if subs:
        inner = sum(jaxpr_cost(j) for j in subs)
        if name == "scan":
            inner *= int(eqn.params.get("length", 1))
        return max(inner, 1.0)
    return float(max(1, sum(_size(v.aval) for v in eqn.outvars)))


def jaxpr_cost(jaxpr: Any) -> float:
    """Sum of `eqn_cost` over a jaxpr's equations."""
    return float(sum(eqn_cost(e) for e in jaxpr.eqns))


def eval_eqns(eqns: Sequence[Any], env: dict[Any, Any]) -> None:
    """Run equations in order, reading and writing values in `env` (keyed by Var)."""
    for eqn in eqns:
        invals = [read(env, v) for v in eqn.invars]
        bound = eqn.primitive.get_bind_params(eqn.params)
        # jax < 0.5 returned (subfuns, params); newer versions return params only.
        subfuns, params = bound if isinstance(bound, tuple) else ((), bound)
        ctx = getattr(getattr(eqn, "ctx", None), "manager", None)
        if ctx is not None:
            with ctx:
                ans = eqn.primitive.bind(*subfuns, *invals, **params)
        else:
            ans = eqn.primitive.bind(*subfuns, *invals, **params)
        outs = ans if eqn.primitive.multiple_results else [ans]
        for v, o in zip(eqn.outvars, outs):
            if not isinstance(v, jcore.DropVar):
                env[v] = o


def read(env: dict[Any, Any], v: Any) -> Any:
    """The value of a Var or Literal."""
    if isinstance(v, jcore.Literal):
        return v.val
    return env[v]


def _abstract(aval: Any) -> Any:
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype)


def _is_var(v: Any) -> bool:
    return not isinstance(v, (jcore.Literal, jcore.DropVar))


def eqn_residuals(eqn: Any) -> tuple[set[int], set[int], int]:
    """What `jax.vjp` of one equation keeps for its backward.

    Returns (indices of inputs kept, indices of outputs kept, bytes of new values kept).
    """
    ins = [v for v in eqn.invars]
    var_pos = [i for i, v in enumerate(ins) if _is_var(v)]

    def f(*xs: Any) -> Any:
        env: dict[Any, Any] = {}
        for i, x in zip(var_pos, xs):
            env[ins[i]] = x
        eval_eqns([eqn], env)
        return [env[v] for v in eqn.outvars if _is_var(v)]

    def fwd(*xs: Any) -> Any:
        outs, vjp_fn = jax.vjp(f, *xs)
        return outs, jax.tree_util.tree_leaves(vjp_fn)

    avals = [_abstract(ins[i].aval) for i in var_pos]
    try:
        closed = jax.make_jaxpr(fwd)(*avals)
    except Exception:  # not differentiable (integer ops, custom rules): assume none saved
        return set(), set(), 0
    jp = closed.jaxpr
    n_out = len([v for v in eqn.outvars if _is_var(v)])
    prim_outs = jp.outvars[:n_out]
    res = jp.outvars[n_out:]
    in_index = {v: var_pos[k] for k, v in enumerate(jp.invars)}
    out_index = {v: k for k, v in enumerate(prim_outs) if _is_var(v)}
    kept_in: set[int] = set()
    kept_out: set[int] = set()
    extra = 0
    seen: set[Any] = set()
    for r in res:
        if not _is_var(r) or r in seen:
            continue
        seen.add(r)
        if r in in_index:
            kept_in.add(in_index[r])
        elif r in out_index:
            kept_out.add(out_index[r])
        elif r in jp.constvars:
            continue
        else:
            extra += aval_bytes(r.aval)
    return kept_in, kept_out, extra


@dataclass(frozen=True)
class JaxprGraph:
    """A closed jaxpr and its graph IR.

    Node k < n_inputs is the jaxpr's k-th input (constvars first, then invars); node
    n_inputs + e is equation e. ``var_node`` maps each Var to the node that defines it.
    """

    closed: Any
    ir: GraphIR
    n_inputs: int
    var_node: dict[Any, int]

    @property
    def eqns(self) -> list[Any]:
        return list(self.closed.jaxpr.eqns)


#: Primitives XLA fuses into their neighbours (elementwise, broadcasts, bitcasts).
ELEMENTWISE = frozenset({
    "abs", "acos", "add", "and", "asin", "atan", "atan2", "broadcast_in_dim", "cbrt", "ceil",
    "clamp", "convert_element_type", "copy", "copy_p", "cos", "cosh", "div", "eq", "erf",
    "erf_inv", "erfc", "exp", "exp2", "expand_dims", "expm1", "floor", "ge", "gt", "imag",
    "integer_pow", "is_finite", "le", "lgamma", "digamma", "log", "log1p", "logistic", "lt",
    "max", "min", "mul", "ne", "neg", "nextafter", "not", "or", "pow", "real", "reduce_precision",
    "rem", "reshape", "round", "rsqrt", "select_n", "shift_left", "shift_right_arithmetic",
    "shift_right_logical", "sign", "sin", "sinh", "sqrt", "square", "squeeze", "stop_gradient",
    "sub", "tan", "tanh", "xor", "random_wrap", "random_unwrap",
})
_CALLS = frozenset({"jit", "pjit", "closed_call", "core_call", "custom_jvp_call",
                    "custom_vjp_call", "custom_vjp_call_jaxpr", "remat", "checkpoint"})


def is_elementwise(eqn: Any) -> bool:
    """True if XLA would fuse the equation away (a call of only elementwise ops counts)."""
    name = eqn.primitive.name
    if name in ELEMENTWISE:
        return True
    if name in _CALLS:
        subs = _sub_jaxprs(eqn.params)
        return bool(subs) and all(is_elementwise(e) for j in subs for e in j.eqns)
    return False


def build_graph(closed: Any,
                residuals: Callable[[Any], tuple[set[int], set[int], int]] = eqn_residuals,
                fusion_aware: bool = True) -> JaxprGraph:
    """The graph IR of a closed jaxpr (inputs cost no bytes: they are not temp memory).

    With ``fusion_aware`` a residual of an elementwise equation is charged to the
    values XLA really materialises (outputs of non-elementwise ops, inputs of them, the
    jaxpr's outputs) that it is recomputed from inside the backward fusion, not to the
    intermediate itself: XLA fuses elementwise chains and recomputes them from their
    materialised inputs (measured: without this the store-all peak of a GELU MLP is
    over-predicted 3.3x).
    """
    jp = closed.jaxpr
    inputs = list(jp.constvars) + list(jp.invars)
    input_set = set(inputs)
    var_node: dict[Any, int] = {}
    nodes: list[NodeInfo] = []
    for k, v in enumerate(inputs):
        var_node[v] = k
        nodes.append(NodeInfo(name=str(v), op="placeholder", target="input", inputs=(),
                              output_bytes=0, extra_saved_bytes=0, cost=0.0,
                              flags=FLAG_INPUT | FLAG_PARAM))
    outputs = {v for v in jp.outvars if _is_var(v)}
    elem = [fusion_aware and is_elementwise(e) for e in jp.eqns]
    producer: dict[Any, int] = {}
    materialized: set[Any] = set(input_set) | outputs
    for e, eqn in enumerate(jp.eqns):
        for v in eqn.invars:
            if _is_var(v) and not elem[e]:
                materialized.add(v)
        for v in eqn.outvars:
            if _is_var(v):
                producer[v] = e
                if not elem[e]:
                    materialized.add(v)
    root_memo: dict[Any, frozenset[Any]] = {}

    def roots(v: Any) -> frozenset[Any]:
        if v in materialized or v not in producer:
            return frozenset((v,))
        got = root_memo.get(v)
        if got is None:
            out: set[Any] = set()
            for u in jp.eqns[producer[v]].invars:
                if _is_var(u):
                    out |= roots(u)
            got = root_memo[v] = frozenset(out)
        return got

    flags: list[int] = [n.flags for n in nodes]
    extras: list[int] = [0] * len(nodes)
    specs: list[tuple[str, tuple[int, ...], int, float]] = []
    n_in = len(inputs)
    saved_vars: set[Any] = set()
    for e, eqn in enumerate(jp.eqns):
        idx = n_in + e
        srcs = tuple(sorted({var_node[v] for v in eqn.invars if _is_var(v) and v in var_node}))
        outs = [v for v in eqn.outvars if _is_var(v)]
        nbytes = sum(aval_bytes(v.aval) for v in outs)
        fl = 0
        if eqn.primitive.name in _ALIAS_PRIMS:
            fl |= FLAG_ALIAS
        if any(v in outputs for v in outs):
            fl |= FLAG_OUTPUT
        kept_in, kept_out, extra = residuals(eqn)
        kept = [eqn.invars[i] for i in kept_in] + [outs[i] for i in kept_out if i < len(outs)]
        if elem[e]:
            if extra:
                kept += [v for v in eqn.invars if _is_var(v)]
            extra = 0
            for v in kept:
                saved_vars |= roots(v)
        else:
            saved_vars.update(kept)
        for v in outs:
            var_node[v] = idx
        flags.append(fl)
        extras.append(extra)
        specs.append((eqn.primitive.name, srcs, nbytes, eqn_cost(eqn)))
    for v in saved_vars:
        k = var_node.get(v)
        if k is not None and k >= n_in:
            flags[k] |= FLAG_OUTPUT_SAVED
    for e, (name, srcs, nbytes, cost) in enumerate(specs):
        nodes.append(NodeInfo(name=f"eqn{e}", op="call_function", target=name, inputs=srcs,
                              output_bytes=nbytes, extra_saved_bytes=0, cost=cost, flags=0))
    nodes = [
        NodeInfo(name=n.name, op=n.op, target=n.target, inputs=n.inputs,
                 output_bytes=n.output_bytes, extra_saved_bytes=extras[k], cost=n.cost,
                 flags=flags[k])
        for k, n in enumerate(nodes)
    ]
    return JaxprGraph(closed=closed, ir=GraphIR(nodes=nodes, method="jaxpr"), n_inputs=n_in,
                      var_node=var_node)
