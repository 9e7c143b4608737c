"""Split a captured FX graph into small GraphModules ("units") at stage boundaries.

A unit is a contiguous run of stages compiled into one GraphModule whose placeholders
are the values it reads from outside (earlier stages, graph inputs, parameters) and
whose output is the tuple of values it produces that are read after it. Placeholder,
get_attr and output nodes never belong to a unit: the interpreter supplies their values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.fx

_FREE_OPS = ("placeholder", "get_attr", "output")


@dataclass
class Unit:
    """A compiled run of graph nodes.

    Attributes:
        gm: GraphModule called as ``gm(*values of inputs)``; returns a tuple, one value
            per name of ``outputs``.
        inputs: names of the values read from outside the unit, in placeholder order.
        outputs: names of the values produced here and read after the unit.
        node_names: names of the original nodes the unit runs, in order.
        mutated_inputs: input names that an in-place op of the unit writes to.
        norm_modules: BatchNorm-like modules called by the unit (their running stats
            must not be updated twice when the unit is recomputed).
    """

    gm: torch.fx.GraphModule
    inputs: list[str]
    outputs: list[str]
    node_names: list[str]
    mutated_inputs: set[str] = field(default_factory=set)
    norm_modules: list[torch.nn.Module] = field(default_factory=list)

    def __call__(self, env: dict[str, object]) -> None:
        """Run the unit, reading its inputs from `env` and writing its outputs to it."""
        outs = self.gm(*[env[n] for n in self.inputs])
        for name, value in zip(self.outputs, outs):
            env[name] = value


def _is_inplace(node: torch.fx.Node, root: torch.nn.Module) -> bool:
    """Whether an FX node writes to its first argument in place."""
    if node.kwargs.get("inplace") is True:
        return True
    if node.op == "call_module":
        mod = root.get_submodule(str(node.target))
        return bool(getattr(mod, "inplace", False))
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.endswith("__")
    if node.op == "call_function":
        target = node.target
        schema = getattr(target, "_schema", None)
        if schema is not None:  # aten overloads: ask the schema
            return any(a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
        name = getattr(target, "__name__", "")
        return name.endswith("_") and not name.endswith("__")
    return False


def _mutated_arg_names(node: torch.fx.Node, root: torch.nn.Module) -> list[str]:
    if not _is_inplace(node, root):
        return []
    target = node.target
    schema = getattr(target, "_schema", None)
    if node.op == "call_function" and schema is not None:
        names = []
        for i, a in enumerate(schema.arguments):
            if a.alias_info is not None and a.alias_info.is_write:
                v = node.args[i] if i < len(node.args) else node.kwargs.get(a.name)
                if isinstance(v, torch.fx.Node):
                    names.append(v.name)
        return names
    first = node.args[0] if node.args else None
    return [first.name] if isinstance(first, torch.fx.Node) else []


def build_unit(gm: torch.fx.GraphModule, nodes: Sequence[torch.fx.Node],
               used_after: set[str]) -> Unit:
    """Compile `nodes` (in order; free nodes are skipped) into a Unit.

    `used_after` holds the names of values read by anything after these nodes
    (later units or the graph output); the unit outputs those it produces.
    """
    compute = [n for n in nodes if n.op not in _FREE_OPS]
    inside = {n.name for n in compute}
    g = torch.fx.Graph()
    env: dict[str, torch.fx.Node] = {}
    inputs: list[str] = []
    mutated: set[str] = set()
    norms: list[torch.nn.Module] = []
    for n in compute:
        for src in n.all_input_nodes:
            if src.name not in inside and src.name not in env:
                env[src.name] = g.placeholder(src.name)
                inputs.append(src.name)
    for n in compute:
        env[n.name] = g.node_copy(n, lambda a: env[a.name])
        mutated.update(m for m in _mutated_arg_names(n, gm) if m not in inside)
        if n.op == "call_module":
            mod = gm.get_submodule(str(n.target))
            norms.extend(m for m in mod.modules()
                         if isinstance(m, torch.nn.modules.batchnorm._NormBase))
    outputs = [n.name for n in compute if n.name in used_after]
    g.output(tuple(env[o] for o in outputs))
    unit_gm = torch.fx.GraphModule(gm, g)
    return Unit(unit_gm, inputs, outputs, [n.name for n in compute], mutated, norms)


def stage_node_lists(gm: torch.fx.GraphModule, bounds: Sequence[tuple[int, int]],
                     topo_order: Sequence[int] | None = None) -> list[list[torch.fx.Node]]:
    """Nodes of each stage, in FX order.

    bounds[i] = (start, end) are positions in `topo_order` (node indices of the FX
    graph; identity when None). Nodes not covered by any stage must be free nodes.
    """
    nodes = list(gm.graph.nodes)
    order = list(range(len(nodes))) if topo_order is None else list(topo_order)
    out: list[list[torch.fx.Node]] = []
    covered: set[int] = set()
    for s, (start, end) in enumerate(bounds):
        if not (0 <= start <= end <= len(order)):
            raise ValueError(f"stage {s} has bounds ({start}, {end}) outside 0..{len(order)}")
        idx = sorted(order[start:end])
        covered.update(idx)
        out.append([nodes[i] for i in idx])
    missing = [nodes[i].name for i in range(len(nodes))
               if i not in covered and nodes[i].op not in _FREE_OPS]
    if missing:
        raise ValueError(f"stage bounds do not cover compute nodes {missing[:5]}")
    return out
