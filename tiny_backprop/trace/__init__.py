"""Trace: one eager forward on fake tensors recording ops, module calls and saved bytes."""

from .tracer import trace_fake, trace_model, trace_real
from .types import CallRecord, OpRecord, Trace

__all__ = ["CallRecord", "OpRecord", "Trace", "trace_fake", "trace_model", "trace_real"]
