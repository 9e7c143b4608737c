"""Capture: a model -> an FX graph + the graph IR (placeholder until the capture work lands)."""
