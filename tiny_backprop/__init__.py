"""tiny-backprop: train PyTorch models under a memory budget by recomputing activations.

Public names are imported lazily so `import tiny_backprop` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "BudgetError": "tiny_backprop.errors",
    "GraphIR": "tiny_backprop.ir",
    "NodeInfo": "tiny_backprop.ir",
    "Keep": "tiny_backprop.tree",
    "Region": "tiny_backprop.tree",
    "plan_chain": "tiny_backprop.plan",
    "parse_budget": "tiny_backprop.plan",
    "Plan": "tiny_backprop.plan",
    "HCModule": "tiny_backprop.hc_module",
    "StepStats": "tiny_backprop.runtime.accounting",
    "CallRef": "tiny_backprop.runtime.spec",
    "RegionSpec": "tiny_backprop.runtime.spec",
    "RuntimePlan": "tiny_backprop.runtime.spec",
    "ModelPlan": "tiny_backprop.planning",
    "plan_model": "tiny_backprop.planning",
    "trace_model": "tiny_backprop.trace",
    "available_activation_bytes": "tiny_backprop.device_memory",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tiny_backprop' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
