"""Per-node classification of an FX node: random, in-place, never-recompute, module path."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.fx

from ..ir import FLAG_INPLACE, FLAG_NEVER_RECOMPUTE, FLAG_RANDOM

# Names (aten op base names, torch functions, Tensor methods) that draw random numbers.
RANDOM_NAMES = frozenset({
    "dropout", "dropout_", "native_dropout", "feature_dropout", "feature_dropout_",
    "alpha_dropout", "alpha_dropout_", "feature_alpha_dropout", "feature_alpha_dropout_",
    "dropout1d", "dropout2d", "dropout3d", "bernoulli", "bernoulli_", "rand", "rand_like",
    "randn", "randn_like", "randint", "randint_like", "randperm", "normal", "normal_",
    "uniform_", "exponential_", "geometric_", "log_normal_", "cauchy_", "random_",
    "multinomial", "rrelu", "rrelu_", "rrelu_with_noise", "poisson", "gumbel_softmax",
})
RANDOM_MODULES = (
    torch.nn.Dropout, torch.nn.Dropout1d, torch.nn.Dropout2d, torch.nn.Dropout3d,
    torch.nn.AlphaDropout, torch.nn.FeatureAlphaDropout, torch.nn.RReLU,
)
# Ops whose output shape depends on tensor values, or that leave the device.
DATA_DEPENDENT_NAMES = frozenset({
    "nonzero", "argwhere", "masked_select", "unique", "_unique", "_unique2",
    "unique_consecutive", "unique_dim", "item", "_local_scalar_dense", "tolist",
    "repeat_interleave", "bincount", "masked_scatter",
})
COLLECTIVE_NAMESPACES = frozenset({"c10d", "_c10d_functional", "c10d_functional", "_dtensor"})
INPLACE_OPERATORS = frozenset({
    operator.iadd, operator.isub, operator.imul, operator.itruediv, operator.ifloordiv,
    operator.imod, operator.ipow, operator.iand, operator.ior, operator.ixor,
    operator.imatmul, operator.setitem,
})


def _base_name(target: Any) -> str:
    """``aten.relu_.default`` -> ``relu_``; functions/methods -> their ``__name__``."""
    if isinstance(target, torch._ops.OpOverload):
        return target._schema.name.split("::")[-1]
    if isinstance(target, torch._ops.OpOverloadPacket):
        return target.__name__
    if isinstance(target, str):
        return target
    return getattr(target, "__name__", "")


def _training_arg(node: torch.fx.Node) -> Any:
    """The ``train``/``training`` argument of a dropout call (None if not given)."""
    for key in ("train", "training"):
        if key in node.kwargs:
            return node.kwargs[key]
    if len(node.args) >= 3:
        return node.args[2]
    return None


def op_flags(node: torch.fx.Node, root: torch.nn.Module) -> int:
    """FLAG_RANDOM / FLAG_INPLACE / FLAG_NEVER_RECOMPUTE bits of one node."""
    if node.op not in ("call_function", "call_method", "call_module"):
        return 0
    flags = 0
    target = node.target
    if node.op == "call_module":
        mod = root.get_submodule(target)
        if isinstance(mod, RANDOM_MODULES) and mod.training:
            flags |= FLAG_RANDOM
        if getattr(mod, "inplace", False) is True:
            flags |= FLAG_INPLACE
        return flags
    name = _base_name(target)
    if isinstance(target, torch._ops.OpOverload):
        tags = set(target.tags)
        if torch.Tag.nondeterministic_seeded in tags:
            flags |= FLAG_RANDOM
        if (torch.Tag.dynamic_output_shape in tags or torch.Tag.data_dependent_output in tags):
            flags |= FLAG_NEVER_RECOMPUTE
        if target.namespace in COLLECTIVE_NAMESPACES:
            flags |= FLAG_NEVER_RECOMPUTE
        if target._schema.is_mutable:
            flags |= FLAG_INPLACE
    if name in RANDOM_NAMES:
        flags |= FLAG_RANDOM
    if "dropout" in name and _training_arg(node) is False:
        flags &= ~FLAG_RANDOM  # F.dropout(x, p, training=False) / aten.dropout(x, p, False)
    if name in DATA_DEPENDENT_NAMES:
        flags |= FLAG_NEVER_RECOMPUTE
    if "collective" in name or name.startswith(("all_reduce", "all_gather", "reduce_scatter")):
        flags |= FLAG_NEVER_RECOMPUTE
    if target in INPLACE_OPERATORS or node.kwargs.get("inplace") is True:
        flags |= FLAG_INPLACE
    elif name.endswith("_") and not name.endswith("__"):
        flags |= FLAG_INPLACE
    return flags


def module_path(node: torch.fx.Node) -> str:
    """Qualified name of the innermost nn.Module owning ``node`` ("" = the root)."""
    if node.op == "call_module":
        return str(node.target)
    if node.op == "get_attr":
        return str(node.target).rpartition(".")[0]
    stack = node.meta.get("nn_module_stack")
    if not stack:
        return ""
    value = list(stack.values())[-1]
    path = value[0] if isinstance(value, tuple) else str(value)
    # export writes e.g. "L['self'].layers[0]" for some frames; keep dotted form.
    return path.replace("L['self'].", "").replace("L['self']", "")


def readable_target(node: torch.fx.Node) -> str:
    """``aten.mm.default``, ``layers.0.attn``, ``relu_``, ``operator.add``."""
    t = node.target
    if isinstance(t, str):
        return t
    if isinstance(t, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        return str(t)
    mod = getattr(t, "__module__", None) or ""
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", repr(t))
    return f"{mod.replace('_operator', 'operator')}.{name}" if mod else name
