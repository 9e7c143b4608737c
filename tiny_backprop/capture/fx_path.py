"""Capture path 1: ``torch.fx.symbolic_trace`` (keeps leaf-module calls as nodes)."""

from __future__ import annotations

import inspect
from typing import Any

import torch
import torch.fx
from torch.utils import _pytree as pytree

from ..ir import GraphIR
from .types import Captured


class PathSkipped(Exception):
    """This capture path does not apply to the model (the message says why)."""


def trace_fx(model: torch.nn.Module, args: tuple, kwargs: dict) -> Captured:
    """Trace ``model`` with symbolic_trace; non-tensor arguments become concrete.

    The graph's placeholders are the parameters of ``model.forward`` in signature
    order (concrete ones included: ``gm`` asserts they keep their example value);
    parameters and buffers are ``get_attr`` nodes or live inside ``call_module`` nodes
    of the user's own submodules (shared, not copied). ``ir`` is left empty.
    """
    sig = inspect.signature(model.forward)
    kinds = {p.kind for p in sig.parameters.values()}
    if inspect.Parameter.VAR_POSITIONAL in kinds or inspect.Parameter.VAR_KEYWORD in kinds:
        raise PathSkipped("forward takes *args/**kwargs, which symbolic_trace cannot bind")
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise TypeError(f"example inputs do not match {type(model).__name__}.forward: {e}") from e
    bound.apply_defaults()
    concrete = {}
    for name, value in bound.arguments.items():
        if isinstance(value, torch.Tensor):
            continue
        if any(isinstance(v, torch.Tensor) for v in pytree.tree_leaves(value)):
            raise PathSkipped(f"argument {name!r} is a container of tensors")
        concrete[name] = value
    gm = torch.fx.symbolic_trace(model, concrete_args=concrete or None)
    names = list(sig.parameters)
    placeholders = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(names):
        raise PathSkipped(f"{len(placeholders)} placeholders for {len(names)} forward parameters")

    def binder(call_args: tuple, call_kwargs: dict) -> list[Any]:
        b = sig.bind(*call_args, **call_kwargs)
        b.apply_defaults()
        return [b.arguments[name] for name in names]

    return Captured(
        gm=gm,
        ir=GraphIR([]),
        method="symbolic_trace",
        param_bindings={n.name: str(n.target) for n in gm.graph.nodes if n.op == "get_attr"},
        input_names=placeholders,
        in_spec=pytree.tree_flatten((args, kwargs))[1],
        out_spec=None,
        user_output_count=1,
        input_binder=binder,
    )
