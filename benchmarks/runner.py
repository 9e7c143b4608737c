"""The parent side: one worker process per (variant, mode, trial), results collected.

Each worker is ``python -m benchmarks.worker`` with ``MALLOC_MMAP_THRESHOLD_=65536`` in
its environment, so its peak memory is its own and RSS tracks live memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Progress
from benchmarks.results import BenchmarkResult, environment_meta, write_csv, write_json

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Variant:
    """One workload to measure (the long-context sweep has several)."""

    workload: dict[str, Any]
    name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def worker_env(device: str) -> dict[str, str]:
    env = dict(os.environ)
    if device == "cpu":
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    root = str(REPO_ROOT)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_worker(spec: dict[str, Any], timeout_s: float) -> BenchmarkResult:
    """Run one spec in a fresh process; a crash or timeout becomes an error result."""
    with tempfile.TemporaryDirectory(prefix="tb-bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "benchmarks.worker", "--spec", json.dumps(spec),
               "--out", str(out)]
        err = ""
        try:
            proc = subprocess.run(cmd, env=worker_env(spec["device"]), cwd=str(REPO_ROOT),
                                  capture_output=True, text=True, timeout=timeout_s)
            err = proc.stderr
            if out.exists():
                return BenchmarkResult.from_dict(json.loads(out.read_text(encoding="utf-8")))
            status = "oom" if proc.returncode in (-9, 137) else "error"
            msg = f"worker exited with code {proc.returncode} and no result"
        except subprocess.TimeoutExpired:
            status, msg = "error", f"worker timed out after {timeout_s:.0f} s"
        tail = "\n".join(err.strip().splitlines()[-5:])
        return BenchmarkResult(
            benchmark=spec["benchmark"], mode=spec["mode"], trial=spec["trial"],
            profile=spec["workload"]["profile"], variant=spec.get("variant", ""),
            device=spec["device"], status=status, error=f"{msg}. {tail}".strip(),
        )


def _outcome(r: BenchmarkResult) -> str:
    if not r.ok:
        return f"{r.status.upper()}: {(r.error or '').splitlines()[0][:120]}"
    mem = r.peak_bytes()
    mem_s = f"{mem / 2**20:.1f} MiB" if mem is not None else "n/a"
    return f"{r.wall_time_s:.4f} s/step, peak {mem_s}"


def run_benchmark(benchmark: str, variants: list[Variant], args: argparse.Namespace,
                  argv: list[str] | None = None) -> list[BenchmarkResult]:
    """Run every mode x trial of every variant; export JSON (+CSV); print the summary.

    ``argv``: the CLI's flags (without the program name), recorded in the JSON header.
    """
    progress = Progress(len(variants) * len(args.modes) * args.trials)
    results: list[BenchmarkResult] = []
    for var in variants:
        for trial in range(args.trials):
            for mode in args.modes:
                spec = {
                    "benchmark": benchmark, "mode": mode, "trial": trial,
                    "variant": var.name, "workload": var.workload, "device": args.device,
                    "seed": args.seed, "warmup": args.warmup, "steps": args.steps,
                    "budget": args.budget, "compile_budget": args.compile_budget,
                    "threads": args.threads,
                }
                label = f"{benchmark} {var.workload['profile']} {var.name + ' ' if var.name else ''}" \
                        f"{mode} trial {trial}"
                progress.start(label)
                r = run_worker(spec, args.timeout)
                r.extra_metrics.update(var.extra)
                results.append(r)
                progress.finish(label, _outcome(r))
    export = args.export or f"results/{benchmark}_{args.profile}.json"
    meta = environment_meta([f"benchmarks.{benchmark}", *(sys.argv[1:] if argv is None else argv)])
    meta.update(benchmark=benchmark, profile=args.profile, modes=args.modes,
                trials=args.trials, warmup=args.warmup, steps=args.steps, seed=args.seed,
                budget=args.budget, compile_budget=args.compile_budget, device=args.device,
                memory_method=("RSS growth sampled every 2 ms, MALLOC_MMAP_THRESHOLD_=65536"
                               if args.device == "cpu"
                               else "torch.cuda.max_memory_allocated after reset"))
    write_json(export, results, meta)
    print(f"wrote {export}", file=sys.stderr)
    if args.csv:
        write_csv(args.csv, results)
        print(f"wrote {args.csv}", file=sys.stderr)
    if not args.no_summary:
        from benchmarks.summarize import format_table, summarize_results

        print(format_table(summarize_results(results)))
    return results
