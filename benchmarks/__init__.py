"""Benchmark CLIs for tiny-backprop: ``python -m benchmarks.<name> --help``.

Modules: ``results`` (the result record, JSON/CSV export), ``common`` (shared flags),
``modes`` (how each mode wraps a model), ``measure`` (time and memory), ``worker`` (one
mode in its own process), ``runner`` (the parent that spawns workers), ``summarize``
(tables). ``utils`` keeps the names of the original benchmark guide working.
"""
