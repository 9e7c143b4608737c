"""Benchmark CLIs: python -m benchmarks.<name>."""
