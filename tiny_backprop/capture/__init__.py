"""Capture: a model -> a flat FX graph + the graph IR (bytes, FLOPs, flags per node).

``tiny_backprop.capture`` names both this package and its main function: once the
package is imported, Python binds the attribute ``tiny_backprop.capture`` to the
package, which would shadow the lazily exported function. The package is therefore
callable: ``tiny_backprop.capture(model, x)`` is ``tiny_backprop.capture.capture(model, x)``.
"""

import sys
from types import ModuleType
from typing import Any

from ..errors import CaptureError
from .api import build_ir, capture
from .types import Captured

__all__ = ["Captured", "CaptureError", "build_ir", "capture"]


class _CallablePackage(ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Captured:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
