"""Capture path 2: ``torch.export.export(..., strict=False)``, an aten-level flat graph."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

from ..ir import GraphIR
from .fx_path import PathSkipped
from .types import Captured, _resolve

_NOISY_LOGGERS = ("torch._export", "torch.export", "torch._dynamo",
                  "torch.fx.experimental.symbolic_shapes", "torch._subclasses")


@contextmanager
def quiet_export() -> Iterator[None]:
    """Silence torch.export's own warnings and log lines (noise to our users)."""
    loggers = [logging.getLogger(n) for n in _NOISY_LOGGERS]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def trace_export(model: torch.nn.Module, args: tuple, kwargs: dict) -> Captured:
    """Export ``model`` (in its current train/eval mode); ``ir`` is left empty.

    ``gm`` is ``ep.graph_module``: placeholders are the lifted parameters, buffers and
    constants (in the graph signature's order), then the user inputs (pytree leaves of
    ``(args, kwargs)``); it returns a flat tuple (buffer mutations, then user outputs).
    """
    with quiet_export():
        ep = torch.export.export(model, tuple(args), kwargs=dict(kwargs), strict=False)
    gm = ep.graph_module
    bindings: dict[str, str] = {}
    constants: dict[str, Any] = {}
    input_names: list[str] = []
    for spec in ep.graph_signature.input_specs:
        name = spec.arg.name
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            bindings[name] = spec.target
        elif spec.kind == InputKind.CONSTANT_TENSOR:
            bindings[name] = spec.target
            try:
                on_model = isinstance(_resolve(model, spec.target), torch.Tensor)
            except AttributeError:
                on_model = False
            if not on_model:  # a lifted constant the model has no attribute for
                constants[name] = ep.constants[spec.target]
        elif spec.kind == InputKind.USER_INPUT:
            input_names.append(name)
        else:
            raise PathSkipped(f"unsupported graph input {name!r} of kind {spec.kind.name}")
    buffer_updates: dict[int, str] = {}
    user_count = 0
    for i, spec in enumerate(ep.graph_signature.output_specs):
        if spec.kind == OutputKind.BUFFER_MUTATION:
            buffer_updates[i] = spec.target
        elif spec.kind == OutputKind.USER_INPUT_MUTATION:
            raise PathSkipped(f"the model mutates its input {spec.target!r} in place")
        else:
            user_count += 1
    in_spec = ep.call_spec.in_spec
    kw_order = list(kwargs)

    def binder(call_args: tuple, call_kwargs: dict) -> list[Any]:
        if set(call_kwargs) != set(kw_order):
            raise ValueError(
                f"keyword arguments {sorted(call_kwargs)} differ from the captured "
                f"example's {sorted(kw_order)}; capture again with these inputs"
            )
        ordered = {k: call_kwargs[k] for k in kw_order}
        leaves, spec = pytree.tree_flatten((tuple(call_args), ordered))
        if spec != in_spec:
            raise ValueError(
                f"inputs are structured as {spec}, but the graph was captured for {in_spec}"
            )
        return leaves

    return Captured(
        gm=gm,
        ir=GraphIR([]),
        method="export",
        param_bindings=bindings,
        input_names=input_names,
        in_spec=in_spec,
        out_spec=ep.call_spec.out_spec,
        buffer_updates=buffer_updates,
        user_output_count=user_count,
        input_binder=binder,
        constants=constants,
    )
