"""The names the benchmark guide documents: ``BenchmarkResult``, ``summarize``,
``format_summary_table`` (plus ``load_results`` for the ``{"meta", "results"}`` files)."""

from __future__ import annotations

from typing import Any

from benchmarks.results import BenchmarkResult, load_results
from benchmarks.summarize import format_table, summarize_results

__all__ = ["BenchmarkResult", "summarize", "format_summary_table", "load_results"]


def summarize(results: list[BenchmarkResult]) -> list[dict[str, Any]]:
    """Per-(benchmark, profile, variant, mode) summary rows; keys include the guide's
    ``mode, trials, wall_time_mean_s, peak_mem_mean_mb, peak_reserved_mean_mb,
    peak_cpu_mean_mb, gpu_util_mean_pct, loss_mean``."""
    return summarize_results(results)


def format_summary_table(summary: list[dict[str, Any]]) -> str:
    """The summary as a plain-text table."""
    return format_table(summary)
