"""Run a captured graph node by node and measure bytes, FLOPs and saved tensors.

Semantics (per node, all in bytes or FLOPs):

* ``output_bytes``: sum of ``numel * element_size`` over every tensor the node really
  returned (tuple / list / dict outputs: every tensor leaf). Non-tensor outputs: 0.
* ``alias``: some returned tensor shares its untyped storage with a tensor the node
  read (a view, an in-place op, ``getitem`` of a tuple). Its bytes are still counted in
  ``output_bytes``; the flag says they are no new memory.
* ``output_saved``: some autograd node, created while running this node or any later
  one, saved a tensor whose storage this node produced first (owner = the first node
  whose output holds that storage; placeholders own the inputs and parameters).
* ``extra_saved_bytes``: bytes of storages autograd saved while running this node that
  are no graph value and no parameter/buffer of the model (dropout masks, LayerNorm
  mean/rstd, ...), each storage counted once over the whole graph.
* ``flops``: ``torch.utils.flop_counter.FlopCounterMode`` total for the node (0 for ops
  it does not know; the caller applies the proxy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.fx
from torch.utils import _pytree as pytree
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class NodeMeasure:
    """What one node did when run with grad enabled (bytes, FLOPs, element counts)."""

    output_bytes: int = 0
    output_elements: int = 0
    extra_saved_bytes: int = 0
    flops: int = 0
    alias: bool = False
    output_saved: bool = False


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """Every tensor inside ``value`` (pytree leaves, ModelOutput included)."""
    return [v for v in pytree.tree_leaves(value) if isinstance(v, torch.Tensor)]


def storage_key(t: torch.Tensor) -> int | None:
    """Identity of ``t``'s untyped storage (its data pointer), None if it has none."""
    try:
        storage = t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None
    if storage.nbytes() == 0:
        return None
    return storage.data_ptr()


class _Measurer(torch.fx.Interpreter):
    def __init__(self, gm: torch.fx.GraphModule, ignored_storages: set[int]) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.ignored = ignored_storages
        self.owner: dict[int, int] = {}  # storage key -> index of the node that owns it
        self.counted: set[int] = set()  # storages already counted as extra saved bytes
        self.index = {n: i for i, n in enumerate(gm.graph.nodes)}
        self.measures = [NodeMeasure() for _ in gm.graph.nodes]

    def run_node(self, n: torch.fx.Node) -> Any:
        i = self.index[n]
        m = self.measures[i]
        if n.op not in ("call_function", "call_method", "call_module"):
            result = super().run_node(n)
        else:
            packed: list[torch.Tensor] = []

            def pack(t: torch.Tensor) -> torch.Tensor:
                packed.append(t)
                return t

            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                with FlopCounterMode(display=False) as counter:
                    result = super().run_node(n)
            m.flops = int(counter.get_total_flops())
        outs = tensor_leaves(result) if n.op != "output" else []
        in_keys = {storage_key(t) for a in n.all_input_nodes for t in tensor_leaves(self.env[a])}
        in_keys.discard(None)
        for t in outs:
            m.output_bytes += t.numel() * t.element_size()
            m.output_elements += t.numel()
            key = storage_key(t)
            if key is None:
                continue
            if key in in_keys and n.op != "placeholder":
                m.alias = True
            self.owner.setdefault(key, i)
        if n.op in ("call_function", "call_method", "call_module"):
            for t in packed:
                key = storage_key(t)
                if key is None:
                    continue
                if key in self.owner:
                    self.measures[self.owner[key]].output_saved = True
                elif key not in self.ignored and key not in self.counted:
                    self.counted.add(key)
                    m.extra_saved_bytes += t.untyped_storage().nbytes()
        return result


def measure_graph(
    gm: torch.fx.GraphModule, flat_args: list[Any], ignored: list[torch.Tensor]
) -> tuple[list[NodeMeasure], Any]:
    """Run ``gm(*flat_args)`` once with grad enabled; per-node measures + its result.

    ``ignored``: tensors (the model's parameters and buffers) whose storages are not
    activations, so autograd saving them adds no extra saved bytes.
    """
    keys = {storage_key(t) for t in ignored}
    keys.discard(None)
    interp = _Measurer(gm, keys)  # type: ignore[arg-type]
    with torch.enable_grad():
        result = interp.run(*flat_args)
    return interp.measures, result
