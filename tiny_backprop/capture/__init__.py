"""Capture: a model -> a flat FX graph + the graph IR (bytes, FLOPs, flags per node).

``tiny_backprop.capture`` is the function (bound eagerly in ``tiny_backprop/__init__.py``);
this package is ``tiny_backprop.capture`` in ``sys.modules``.
"""

from ..errors import CaptureError
from .api import build_ir, capture
from .types import Captured

__all__ = ["Captured", "CaptureError", "build_ir", "capture"]
