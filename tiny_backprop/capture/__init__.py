"""Capture: a model -> a flat FX graph + the graph IR (bytes, FLOPs, flags per node)."""

from ..errors import CaptureError
from .api import build_ir, capture
from .types import Captured

__all__ = ["Captured", "CaptureError", "build_ir", "capture"]
