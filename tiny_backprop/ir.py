"""The graph IR: what the C core needs to know about a captured model.

Nodes are in topological order (the FX graph's order). Sizes are bytes, costs are
FLOPs (or a documented proxy where torch's FLOP counter does not know the op).
Tensors never enter C: only these numbers do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Node flags (bit set). Must match csrc/core/graph.h.
FLAG_RANDOM = 1  # draws random numbers (dropout, rand*): recompute must replay the RNG state
FLAG_INPLACE = 2  # mutates one of its inputs in place
FLAG_NEVER_RECOMPUTE = 4  # must never be recomputed (collectives, data-dependent shapes)
FLAG_PARAM = 8  # parameter, buffer or constant: not activation memory
FLAG_INPUT = 16  # a graph input (the user's example arguments)
FLAG_OUTPUT = 32  # returned by the graph
FLAG_ALIAS = 64  # output is a view of an input's storage: no new memory of its own
FLAG_OUTPUT_SAVED = 128  # some backward (its own or a consumer's) saves this node's output

FLAG_NAMES = {
    FLAG_RANDOM: "random",
    FLAG_INPLACE: "inplace",
    FLAG_NEVER_RECOMPUTE: "never_recompute",
    FLAG_PARAM: "param",
    FLAG_INPUT: "input",
    FLAG_OUTPUT: "output",
    FLAG_ALIAS: "alias",
    FLAG_OUTPUT_SAVED: "output_saved",
}


@dataclass(frozen=True)
class NodeInfo:
    """One node of the captured graph.

    Attributes:
        name: the FX node's name.
        op: the FX opcode (placeholder, get_attr, call_function, call_module, call_method, output).
        target: readable target (``aten.mm.default``, ``layers.0.attn``, ...).
        inputs: indices of the nodes whose outputs this node reads (all earlier).
        output_bytes: bytes of all tensor outputs this node really produced.
        extra_saved_bytes: bytes autograd saves for this node's backward that are not
            any graph value (dropout masks, LayerNorm mean/rstd, ...).
        cost: forward cost in FLOPs (or the proxy documented in capture).
        flags: FLAG_* bit set.
        module_path: qualified name of the nn.Module that owns the node ("" = root).
    """

    name: str
    op: str
    target: str
    inputs: tuple[int, ...]
    output_bytes: int
    extra_saved_bytes: int
    cost: float
    flags: int
    module_path: str = ""

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)


@dataclass
class GraphIR:
    """A captured graph: nodes in topological order plus how it was captured."""

    nodes: list[NodeInfo]
    method: str = ""  # "symbolic_trace" | "export" | "module_calls"
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.nodes)

    def arrays(self) -> dict[str, list]:
        """Plain lists for the C core: output_bytes, saved_bytes, cost, flags, inputs."""
        return {
            "output_bytes": [n.output_bytes for n in self.nodes],
            "saved_bytes": [n.extra_saved_bytes for n in self.nodes],
            "cost": [float(n.cost) for n in self.nodes],
            "flags": [n.flags for n in self.nodes],
            "inputs": [list(n.inputs) for n in self.nodes],
        }
