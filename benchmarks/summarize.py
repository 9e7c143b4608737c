"""Summary tables over benchmark results.

    python -m benchmarks.summarize results/*.json

Rows are grouped by (benchmark, profile, variant, mode). Time: mean, sample std and CV% of
the per-trial mean step time (seconds) when there are several trials, else of the
steps of the one trial. Memory: mean peak (CUDA allocated peak when
measured on CUDA, else CPU RSS growth), MiB. ``mem x`` and ``time x`` are ratios to naive
in the same (benchmark, profile, variant) group; ``saving`` is 1 - mem x. ``step_median_s`` is the median over every measured step. Failed trials are
counted in ``fail`` and left out of the means.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from benchmarks.results import BenchmarkResult, load_results

MiB = 2**20


def _mean(xs: list[float]) -> float | None:
    return statistics.fmean(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    if not xs:
        return None
    return statistics.stdev(xs) if len(xs) > 1 else 0.0


def summarize_results(results: list[BenchmarkResult]) -> list[dict[str, Any]]:
    """One dict per (benchmark, profile, variant, mode), in first-seen order."""
    groups: dict[tuple, list[BenchmarkResult]] = {}
    for r in results:
        groups.setdefault((r.benchmark, r.profile, r.variant, r.mode), []).append(r)
    rows = []
    for (bench, prof, var, mode), rs in groups.items():
        ok = [r for r in rs if r.ok]
        times = [r.wall_time_s for r in ok if r.wall_time_s is not None]
        mems = [r.peak_bytes() for r in ok if r.peak_bytes() is not None]
        t_mean, t_std = _mean(times), _std(times)
        if len(ok) == 1:  # one trial: the spread of its steps is the only spread there is
            t_std = ok[0].extra_metrics.get("step_time_std_s")
        grads = [r.extra_metrics.get("grads_match_naive") for r in ok]
        row: dict[str, Any] = {
            "benchmark": bench, "profile": prof, "variant": var, "mode": mode,
            "trials": len(ok), "failed": len(rs) - len(ok),
            "status": "ok" if ok else (rs[0].status if rs else "error"),
            "error": None if ok else rs[0].error,
            "wall_time_mean_s": t_mean, "wall_time_std_s": t_std,
            "wall_time_cv_pct": (100 * t_std / t_mean) if t_mean and t_std is not None else None,
            "step_time_median_s": (statistics.median(steps) if (steps := [
                t for r in ok for t in r.extra_metrics.get("step_times_s", [])]) else None),
            "peak_mem_mean_bytes": _mean(mems),
            "peak_mem_std_bytes": _std(mems),
            "grads_match_naive": (all(bool(g) for g in grads) if grads and None not in grads
                                  else None),
        }
        for key, attr in (("peak_mem_mean_mb", "peak_mem_bytes"),
                          ("peak_reserved_mean_mb", "peak_mem_reserved_bytes"),
                          ("peak_cpu_mean_mb", "peak_cpu_bytes")):
            vals = [getattr(r, attr) for r in ok if getattr(r, attr) is not None]
            row[key] = _mean(vals) / MiB if vals else None
        utils = [r.gpu_utilization_pct for r in ok if r.gpu_utilization_pct is not None]
        row["gpu_util_mean_pct"] = _mean(utils)
        losses = [r.loss_value for r in ok if r.loss_value is not None]
        row["loss_mean"] = _mean(losses)
        held = [r.held_activation_bytes for r in ok if r.held_activation_bytes is not None]
        row["held_activation_mean_bytes"] = _mean(held)
        rows.append(row)
    naive = {(r["benchmark"], r["profile"], r["variant"]): r for r in rows if r["mode"] == "naive"}
    for row in rows:
        base = naive.get((row["benchmark"], row["profile"], row["variant"]))
        row["time_ratio_vs_naive"] = _ratio(row["wall_time_mean_s"], base and base["wall_time_mean_s"])
        row["mem_ratio_vs_naive"] = _ratio(row["peak_mem_mean_bytes"],
                                           base and base["peak_mem_mean_bytes"])
        row["mem_saving_pct"] = (None if row["mem_ratio_vs_naive"] is None
                                 else 100 * (1 - row["mem_ratio_vs_naive"]))
    return rows


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def _f(x: Any, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


NOISY_CV_PCT = 10.0  # above this, the table marks the time as noisy

COLUMNS = ("benchmark", "profile", "variant", "mode", "trials", "fail", "time_mean_s",
           "time_std_s", "cv%", "step_median_s", "peak_MiB", "mem_x", "saving%", "time_x", "grads_ok")


def format_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table; failed groups show their status and error in a footnote."""
    lines, notes = [], []
    body = []
    for r in rows:
        grads = r["grads_match_naive"]
        body.append([
            r["benchmark"], r["profile"] or "-", r["variant"] or "-", r["mode"],
            str(r["trials"]), str(r["failed"]),
            _f(r["wall_time_mean_s"], ".4f") if r["trials"] else r["status"].upper(),
            _f(r["wall_time_std_s"], ".4f"),
            _f(r["wall_time_cv_pct"], ".1f") + ("!" if (r["wall_time_cv_pct"] or 0) > NOISY_CV_PCT
                                                else ""),
            _f(r["step_time_median_s"], ".4f"),
            _f(None if r["peak_mem_mean_bytes"] is None else r["peak_mem_mean_bytes"] / MiB, ".1f"),
            _f(r["mem_ratio_vs_naive"], ".3f"), _f(r["mem_saving_pct"], ".1f"),
            _f(r["time_ratio_vs_naive"], ".3f"),
            "-" if grads is None else ("yes" if grads else "NO"),
        ])
        if not r["trials"] and r["error"]:
            notes.append(f"  {r['benchmark']}/{r['mode']}: {r['status']}: "
                         f"{r['error'].splitlines()[0][:160]}")
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c)
              for i, c in enumerate(COLUMNS)]
    lines.append(" | ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
    lines.append("-+-".join("-" * w for w in widths))
    lines += [" | ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    if any((r["wall_time_cv_pct"] or 0) > NOISY_CV_PCT for r in rows):
        lines.append(f"cv% marked '!' is above {NOISY_CV_PCT:.0f}%: times are noisy (shared or "
                     "busy machine?); rerun with more --steps/--trials before comparing them")
    if notes:
        lines.append("failures:")
        lines += notes
    lines.append("peak_MiB: CUDA allocated peak if on CUDA, else CPU RSS growth; mem_x/time_x: "
                 "ratio to naive of the same benchmark/profile/variant; grads_ok: first-step "
                 "gradients allclose to naive; std/cv%: across trials, or across steps of a single trial")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Summarise benchmark result JSON files.")
    ap.add_argument("paths", nargs="+", help="results JSON files")
    args = ap.parse_args(argv)
    results: list[BenchmarkResult] = []
    for path in args.paths:
        try:
            results += load_results(path)[1]
        except (OSError, ValueError) as exc:
            print(f"summarize: cannot read {path}: {exc}", file=sys.stderr)
            return 2
    if not results:
        print("summarize: no results in the given files", file=sys.stderr)
        return 1
    print(format_table(summarize_results(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
