"""What capture returns: the contract between capture and the runtime."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.fx

from ..ir import GraphIR


@dataclass
class Captured:
    """A captured model.

    Attributes:
        gm: a flat FX GraphModule. Its graph's nodes align 1:1, in order, with
            ``ir.nodes`` (placeholders and the output node included).
        ir: the graph IR (bytes, costs, flags per node).
        method: "symbolic_trace" or "export".
        param_bindings: FX node name (placeholder of export, get_attr of symbolic_trace)
            -> qualified name in the user's model of the parameter or buffer it reads.
            The runtime binds these to the user's own tensors, so gradients land there.
        input_names: placeholder names of the user's inputs, in the flattened order of
            ``(args, kwargs)`` given by ``in_spec``.
        in_spec: torch.utils._pytree spec of ``(args, kwargs)``.
        out_spec: pytree spec that rebuilds the model's output from the graph's flat outputs
            (dict-like ModelOutputs included), or None when the graph returns it directly.
        buffer_updates: graph output index -> buffer qualname that the output's value is
            written back to after the forward (export's BatchNorm running stats).
        user_output_count: how many of the flat graph outputs belong to the user (the rest
            are buffer updates).
    """

    gm: torch.fx.GraphModule
    ir: GraphIR
    method: str
    param_bindings: dict[str, str] = field(default_factory=dict)
    input_names: list[str] = field(default_factory=list)
    in_spec: Any = None
    out_spec: Any = None
    buffer_updates: dict[int, str] = field(default_factory=dict)
    user_output_count: int = 0
    diagnostics: list[str] = field(default_factory=list)
