"""JAX front end: plan a jaxpr with the C planner and apply the plan under XLA.

Needs the optional extra: ``pip install tiny-backprop[jax]``.
"""

from __future__ import annotations

try:
    import jax as _jax  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "tiny_backprop.jax needs JAX, which is an optional extra: "
        "pip install 'tiny-backprop[jax]' (or pip install jax jaxlib)"
    ) from exc

from ._api import (
    DEFAULT_MAX_STAGES,
    DataDependentControlFlowError,
    height_compressed_grad,
    height_compressed_value_and_grad,
    plan,
)

__all__ = [
    "DEFAULT_MAX_STAGES",
    "DataDependentControlFlowError",
    "height_compressed_grad",
    "height_compressed_value_and_grad",
    "plan",
]
