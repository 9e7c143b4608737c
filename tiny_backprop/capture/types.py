"""What capture returns: the contract between capture and the runtime.

How to execute ``gm`` with the user's own parameters
----------------------------------------------------
``gm`` takes **flat positional arguments, one per placeholder, in the graph's
placeholder order** and nothing else:

* a placeholder whose name is a key of ``param_bindings`` gets the user's tensor
  ``model.get_parameter/get_buffer(param_bindings[name])`` (or, for a lifted tensor
  constant that is no attribute of the model, ``constants[name]``);
* every other placeholder is a user input; ``input_binder(args, kwargs)`` returns
  their values in placeholder order (its names are ``input_names``).

``Captured.flat_args(model, *args, **kwargs)`` builds exactly that list and
``Captured.run(model, *args, **kwargs)`` calls ``gm`` with it and rebuilds the
model-shaped output. Gradients land on the user's own parameters because the
tensors themselves are passed (symbolic_trace: its ``call_module``/``get_attr``
nodes read the user's submodules, which the GraphModule shares, not copies).

Graph outputs: symbolic_trace's graph returns the model's output as the model does
(``out_spec`` None). Export's graph returns a flat tuple; indices in
``buffer_updates`` hold new buffer values (write them back with ``copy_`` under
``no_grad`` once per real forward), the others, in order, are the user's outputs
(``user_output_count`` of them) that ``out_spec`` turns back into the model's output
(dict-like ``ModelOutput`` included). With torch's training IR (torch >= 2.5) buffer
mutations such as BatchNorm running stats are usually *in-place ops in the graph*
(flagged ``FLAG_INPLACE``) on the bound buffers instead, and ``buffer_updates`` is empty.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx
from torch.utils import _pytree as pytree

from ..ir import GraphIR


def _resolve(model: torch.nn.Module, qualname: str) -> Any:
    obj: Any = model
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj


@dataclass
class Captured:
    """A captured model.

    Attributes:
        gm: a flat FX GraphModule. Its graph's nodes align 1:1, in order, with
            ``ir.nodes`` (placeholders and the output node included). Call it as
            described in this module's docstring (``flat_args``).
        ir: the graph IR (bytes, costs, flags per node).
        method: "symbolic_trace" or "export".
        param_bindings: FX node name (placeholder of export, get_attr of symbolic_trace)
            -> qualified name in the user's model of the parameter or buffer it reads.
            The runtime binds these to the user's own tensors, so gradients land there.
            Only export's placeholders must be passed by the caller; symbolic_trace's
            get_attr nodes read the shared submodules themselves.
        input_names: placeholder names of the user's inputs, in placeholder order.
        in_spec: torch.utils._pytree spec of the example ``(args, kwargs)``.
        out_spec: pytree spec that rebuilds the model's output from the user's flat graph
            outputs (dict-like ModelOutputs included), or None when the graph returns it
            directly (symbolic_trace).
        buffer_updates: graph output index -> buffer qualname that the output's value is
            written back to after the forward (functionalised buffer mutations).
        user_output_count: how many of the flat graph outputs belong to the user (the
            indices not in ``buffer_updates``); 1 for symbolic_trace.
        diagnostics: one line per remark of the capture (why a path was skipped, ...).
        input_binder: ``(args, kwargs) -> list`` of user-input values in the order of
            ``input_names``.
        constants: placeholder name -> tensor for lifted constants that are not
            attributes of the model.
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
    input_binder: Callable[[tuple, dict], list[Any]] | None = None
    constants: dict[str, Any] = field(default_factory=dict)

    def placeholder_names(self) -> list[str]:
        """Names of ``gm``'s placeholders, in order (the positional parameters of ``gm``)."""
        return [n.name for n in self.gm.graph.nodes if n.op == "placeholder"]

    def bound_value(self, model: torch.nn.Module, node_name: str) -> Any:
        """The user's tensor bound to param/buffer/constant node ``node_name``."""
        if node_name in self.constants:
            return self.constants[node_name]
        return _resolve(model, self.param_bindings[node_name])

    def flat_args(self, model: torch.nn.Module, *args: Any, **kwargs: Any) -> list[Any]:
        """Positional arguments for ``gm``: the user's own params bound + the inputs."""
        if self.input_binder is None:
            raise ValueError("this Captured has no input_binder; build it with capture()")
        inputs = dict(zip(self.input_names, self.input_binder(args, kwargs)))
        out = []
        for name in self.placeholder_names():
            if name in inputs:
                out.append(inputs[name])
            elif self.method == "export":
                out.append(self.bound_value(model, name))
            else:
                raise ValueError(f"placeholder {name!r} is neither a user input nor bound")
        return out

    def user_outputs(self, flat_out: Any) -> Any:
        """The model-shaped output from what ``gm`` returned."""
        if self.out_spec is None:
            return flat_out
        outs = [v for i, v in enumerate(flat_out) if i not in self.buffer_updates]
        return pytree.tree_unflatten(outs, self.out_spec)

    def write_buffer_updates(self, model: torch.nn.Module, flat_out: Any) -> None:
        """Copy functionalised buffer mutations (``buffer_updates``) into the model."""
        if not self.buffer_updates:
            return
        with torch.no_grad():
            for i, qualname in self.buffer_updates.items():
                _resolve(model, qualname).copy_(flat_out[i])

    def run(self, model: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        """Execute ``gm`` like ``model(*args, **kwargs)``, with the user's params bound.

        Buffer updates are written back, so the effect on the model equals eager's.
        """
        flat_out = self.gm(*self.flat_args(model, *args, **kwargs))
        self.write_buffer_updates(model, flat_out)
        return self.user_outputs(flat_out)
