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
    FLAG_RANDOM,
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


# Cost of one output element of an op that FlopCounterMode counts no FLOPs for, in
# FLOP-equivalents (the time of that many matmul FLOPs). FLOPs alone call GELU's tanh,
# softmax and dropout free, so the planner recomputed them eagerly although on a CPU
# core they take longer per element than a matmul does per 100 FLOPs. Measured on the
# 2-core AMD EPYC of this project, torch 2.13 CPU, 1 thread, fp32, 1M elements
# (a 1024x256x1024 matmul ran at ~40 GFLOP/s): dropout ~490, tanh ~220, tanh-GELU
# ~140, erf-GELU ~55, softmax ~45, layer_norm ~45, mul ~13, add ~4.
# Default "flops" (1 per element). "calibrated" (these weights) changed neither the
# predicted/measured peaks nor, measurably, the step times of zoo gpt2 small/medium at
# budgets 0.5/0.3/0.15 (results/README.md), so it is opt-in:
# ``tiny_backprop.capture.api.COST_MODEL = "calibrated"`` before the first step.
COST_MODEL = "flops"
RANDOM_ELEMENT_COST = 400.0
ELEMENT_COSTS = {
    "tanh": 200.0, "tanh_": 200.0, "gelu": 100.0, "GELU": 100.0, "erf": 60.0, "exp": 60.0,
    "exp_": 60.0, "log": 60.0, "sigmoid": 60.0, "silu": 60.0, "SiLU": 60.0, "Tanh": 200.0,
    "Sigmoid": 60.0, "pow": 40.0, "rsqrt": 20.0, "sqrt": 20.0, "_softmax": 50.0,
    "softmax": 50.0, "_log_softmax": 50.0, "log_softmax": 50.0, "Softmax": 50.0,
    "native_layer_norm": 50.0, "layer_norm": 50.0, "LayerNorm": 50.0,
    "_native_batch_norm_legit_functional": 50.0, "_native_batch_norm_legit": 50.0,
    "native_batch_norm": 50.0, "batch_norm": 50.0, "BatchNorm2d": 50.0,
    "BatchNorm1d": 50.0, "GroupNorm": 50.0, "native_group_norm": 50.0, "group_norm": 50.0,
}
DEFAULT_ELEMENT_COST = 10.0


def _base_name(n: torch.fx.Node, gm: torch.nn.Module) -> str:
    t = n.target
    if n.op == "call_module" and isinstance(t, str):
        try:
            return type(gm.get_submodule(t)).__name__
        except AttributeError:
            return t
    if isinstance(t, torch._ops.OpOverload):
        return t._schema.name.split("::")[-1]
    if isinstance(t, torch._ops.OpOverloadPacket):
        return t._qualified_op_name.split("::")[-1]
    return str(t) if isinstance(t, str) else getattr(t, "__name__", "")


def element_cost(n: torch.fx.Node, gm: torch.nn.Module, flags: int) -> float:
    """FLOP-equivalents per output element of an op with no counted FLOPs."""
    if COST_MODEL == "flops":
        return 1.0
    if flags & FLAG_RANDOM:
        return RANDOM_ELEMENT_COST
    return ELEMENT_COSTS.get(_base_name(n, gm), DEFAULT_ELEMENT_COST)


def build_ir(cap: Captured, model: torch.nn.Module, args: tuple, kwargs: dict) -> GraphIR:
    """Measure ``cap.gm`` on the example inputs (one forward with grad) into a GraphIR.

    ``cost`` is the node's FLOPs from FlopCounterMode, or, for ops it counts none for,
    output elements x `element_cost` (0 for aliases/views, placeholders, get_attr and
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
            cost = 0.0 if m.alias else float(m.output_elements) * element_cost(n, cap.gm, flags)
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
    return GraphIR(infos, method=cap.method, meta={"cost_unit": "flops", "cost_model": COST_MODEL})


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
    return capture_in_order(model, example_args, example_kwargs, PATHS)


# The runtime's order: export's aten-level graph gives exact memory accounting (every
# internal copy is a graph value); symbolic_trace's module-level nodes hide some of it.
RUNTIME_PATHS = (("export", trace_export), ("symbolic_trace", trace_fx))


def capture_in_order(
    model: torch.nn.Module, example_args: tuple, example_kwargs: dict, paths: tuple
) -> Captured:
    """`capture` with the ladder given as ``((name, path_fn), ...)``, tried in order."""
    attempts: list[tuple[str, BaseException]] = []
    notes: list[str] = []
    with preserved_model_state(model):
        for name, path in paths:
            try:
                cap = path(model, example_args, example_kwargs)
                cap.ir = build_ir(cap, model, example_args, example_kwargs)
            except TypeError as e:
                if "example inputs do not match" in str(e):
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
