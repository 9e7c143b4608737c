"""``capture(model, *example_args, **example_kwargs)``: the capture ladder + the IR."""

from __future__ import annotations

from typing import Any

import torch
import torch.fx

from ..errors import CaptureError
from ..ir import (
    FLAG_ALIAS,
    FLAG_INPUT,
    FLAG_OUTPUT,
    FLAG_OUTPUT_SAVED,
    FLAG_PARAM,
    GraphIR,
    NodeInfo,
)
from .export_path import trace_export
from .flags import module_path, op_flags, readable_target
from .fx_path import PathSkipped, trace_fx
from .measure import measure_graph
from .report import failure_message, first_line
from .state import preserved_model_state
from .types import Captured

PATHS = (("symbolic_trace", trace_fx), ("export", trace_export))


def build_ir(cap: Captured, model: torch.nn.Module, args: tuple, kwargs: dict) -> GraphIR:
    """Measure ``cap.gm`` on the example inputs (one forward with grad) into a GraphIR.

    ``cost`` is the node's FLOPs from FlopCounterMode; where it counts none, the proxy
    is one unit per output element (0 for aliases/views, placeholders, get_attr and
    the output node).
    """
    flat = cap.flat_args(model, *args, **kwargs)
    ignored = [*model.parameters(), *model.buffers(), *cap.constants.values()]
    measures, _ = measure_graph(cap.gm, flat, ignored)
    nodes = list(cap.gm.graph.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    returned: set[torch.fx.Node] = set()
    for n in nodes:
        if n.op == "output":
            torch.fx.node.map_arg(n.args, lambda a: returned.add(a))
    bound = set(cap.param_bindings) | set(cap.constants)
    infos = []
    for _i, (n, m) in enumerate(zip(nodes, measures)):
        flags = op_flags(n, cap.gm)
        if n.op == "placeholder":
            flags |= FLAG_PARAM if n.name in bound else FLAG_INPUT
        elif n.op == "get_attr":
            flags |= FLAG_PARAM
        if n in returned:
            flags |= FLAG_OUTPUT
        if m.alias:
            flags |= FLAG_ALIAS
        if m.output_saved:
            flags |= FLAG_OUTPUT_SAVED
        computes = n.op in ("call_function", "call_method", "call_module")
        if not computes:
            cost = 0.0
        elif m.flops > 0:
            cost = float(m.flops)
        else:
            cost = 0.0 if m.alias else float(m.output_elements)
        infos.append(NodeInfo(
            name=n.name,
            op=n.op,
            target=readable_target(n),
            inputs=tuple(sorted({index[a] for a in n.all_input_nodes})),
            output_bytes=m.output_bytes,
            extra_saved_bytes=m.extra_saved_bytes,
            cost=cost,
            flags=flags,
            module_path=module_path(n),
        ))
    return GraphIR(infos, method=cap.method, meta={"cost_unit": "flops"})


def capture(model: torch.nn.Module, *example_args: Any, **example_kwargs: Any) -> Captured:
    """Capture ``model`` as a flat FX graph and measure it into a GraphIR.

    Tries ``torch.fx.symbolic_trace``, then ``torch.export.export(strict=False)`` in
    the model's current train/eval mode. Runs the model once on the example inputs
    (to measure bytes, FLOPs and saved tensors) and leaves it exactly as it was:
    train/eval flags, buffers (BatchNorm running stats), parameters and their
    ``.grad``, and the global RNG state (CPU and initialised CUDA devices).

    Raises:
        TypeError: ``model`` is no ``torch.nn.Module``, or the inputs do not fit forward.
        ValueError: no example inputs were given.
        CaptureError: no path could capture the model (says where and why, and what to do).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"capture(model, ...): 'model' must be a torch.nn.Module, got {type(model).__name__}"
        )
    if not example_args and not example_kwargs:
        raise ValueError(
            "capture(model, *example_args, **example_kwargs): no example inputs given; "
            "pass what you would call the model with, e.g. capture(model, torch.randn(8, 16))"
        )
    attempts: list[tuple[str, BaseException]] = []
    notes: list[str] = []
    with preserved_model_state(model):
        for name, path in PATHS:
            try:
                cap = path(model, example_args, example_kwargs)
                cap.ir = build_ir(cap, model, example_args, example_kwargs)
            except TypeError as e:
                if name == PATHS[0][0] and "example inputs do not match" in str(e):
                    raise
                attempts.append((name, e))
                notes.append(f"{name}: {first_line(e)}")
                continue
            except PathSkipped as e:
                attempts.append((name, e))
                notes.append(f"{name}: skipped ({e})")
                continue
            except Exception as e:  # noqa: BLE001 - every failure is reported below
                attempts.append((name, e))
                notes.append(f"{name}: {first_line(e)}")
                continue
            cap.diagnostics = notes + [f"captured by {name}: {len(cap.ir)} nodes"]
            return cap
    raise CaptureError(failure_message(type(model).__name__, attempts)) from attempts[-1][1]
