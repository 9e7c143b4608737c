#!/usr/bin/env python3
"""Verification harness: lint, tests, benchmarks, efficiency thresholds, summary JSON.

    ./run_full_test --benchmark-profile small --trials 1 --targets gpt2 transformer

Steps: ``import`` (the package and every benchmark module import cleanly), ``lint``
(ruff), ``tests`` (pytest), one ``bench:<target>`` step per target. Then, for every
benchmark where both naive and tiny ran, tiny must reach
``peak(tiny) / peak(naive) <= --memory-threshold`` and
``time(tiny) / time(naive) <= --time-threshold``; a tiny row that errored is a failure.
Writes ``results/verification_summary_<UTC timestamp>.json``. Exit status: 0 when every
step and check passed, 1 otherwise, 2 for bad flags.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TARGETS = ("transformer", "gpt2", "resnet", "long_context", "unet")
IMPORTS = ("tiny_backprop", "tiny_backprop.zoo", "benchmarks.worker", "benchmarks.summarize",
           "benchmarks.lm", "benchmarks.hf", *(f"benchmarks.{t}" for t in TARGETS))


def run_step(name: str, cmd: list[str]) -> dict[str, Any]:
    """Run one command from the repository root; its output goes to this terminal."""
    print(f"== {name}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    rc = subprocess.run(cmd, cwd=str(ROOT)).returncode
    secs = time.perf_counter() - t0
    print(f"== {name}: {'ok' if rc == 0 else f'FAILED (exit {rc})'} in {secs:.1f} s",
          file=sys.stderr, flush=True)
    return {"step": name, "command": shlex.join(cmd), "exit_code": rc, "ok": rc == 0,
            "seconds": secs}


def check_thresholds(rows: list[dict[str, Any]], memory_threshold: float,
                     time_threshold: float) -> list[dict[str, Any]]:
    """Checks of tiny against naive per (benchmark, profile, variant), from summary rows."""
    checks = []
    for r in rows:
        if r["mode"] != "tiny":
            continue
        where = f"{r['benchmark']}/{r['profile']}" + (f"/{r['variant']}" if r["variant"] else "")
        if not r["trials"]:
            checks.append({"check": f"{where}: tiny ran", "ok": False,
                           "detail": f"{r['status']}: {r['error']}"})
            continue
        for label, value, limit in (("memory", r["mem_ratio_vs_naive"], memory_threshold),
                                    ("time", r["time_ratio_vs_naive"], time_threshold)):
            ok = value is not None and value <= limit
            checks.append({"check": f"{where}: tiny {label} ratio vs naive <= {limit}",
                           "ok": ok, "value": value,
                           "detail": None if value is not None else "no naive baseline"})
    return checks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark-profile", choices=("small", "medium", "large"), default="small")
    ap.add_argument("--trials", type=int, default=1)
    ap.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS),
                    metavar="TARGET", help=f"benchmarks to run (of: {', '.join(TARGETS)})")
    ap.add_argument("--modes", nargs="+", default=["naive", "checkpoint", "tiny"],
                    help="modes passed to each benchmark")
    ap.add_argument("--memory-threshold", type=float, default=1.0,
                    help="max peak(tiny)/peak(naive) (default 1.0)")
    ap.add_argument("--time-threshold", type=float, default=1.5,
                    help="max time(tiny)/time(naive) (default 1.5)")
    ap.add_argument("--benchmark-args", default="--warmup 1 --steps 2",
                    help="extra flags for every benchmark CLI (one shell-quoted string)")
    ap.add_argument("--skip-lint", action="store_true")
    ap.add_argument("--skip-tests", action="store_true")
    ap.add_argument("--skip-benchmarks", action="store_true")
    ap.add_argument("--output-dir", default="results", help="where the summary JSON goes")
    args = ap.parse_args(argv)
    if args.trials < 1:
        ap.error("--trials must be >= 1")

    py = sys.executable
    steps = [run_step("import", [py, "-c", "; ".join(f"import {m}" for m in IMPORTS)])]
    if not args.skip_lint:
        steps.append(run_step("lint", [py, "-m", "ruff", "check", "."]))
    if not args.skip_tests:
        steps.append(run_step("tests", [py, "-m", "pytest", "-q", "tests"]))
    bench_rows: list[dict[str, Any]] = []
    checks: list[dict[str, Any]] = []
    if not args.skip_benchmarks:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out_dir = ROOT / args.output_dir / "verification"
        for t in args.targets:
            export = out_dir / f"{t}_{args.benchmark_profile}_{stamp}.json"
            cmd = [py, "-m", f"benchmarks.{t}", "--profile", args.benchmark_profile,
                   "--trials", str(args.trials), "--modes", *args.modes, "--export", str(export),
                   "--no-summary", *shlex.split(args.benchmark_args)]
            step = run_step(f"bench:{t}", cmd)
            steps.append(step)
            if export.exists():
                from benchmarks.results import load_results
                from benchmarks.summarize import summarize_results

                rows = summarize_results(load_results(export)[1])
                bench_rows += rows
                step["results"] = str(export)
        checks = check_thresholds(bench_rows, args.memory_threshold, args.time_threshold)
        if bench_rows:
            from benchmarks.summarize import format_table

            print(format_table(bench_rows))

    ok = all(s["ok"] for s in steps) and all(c["ok"] for c in checks)
    summary = {"ok": ok, "argv": sys.argv[1:] if argv is None else argv,
               "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "steps": steps, "checks": checks, "benchmarks": bench_rows}
    out = ROOT / args.output_dir / \
        f"verification_summary_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    for c in checks:
        print(f"{'PASS' if c['ok'] else 'FAIL'}  {c['check']}"
              + (f"  (value {c['value']:.3f})" if c.get("value") is not None else "")
              + (f"  [{c['detail']}]" if c.get("detail") else ""))
    for s in steps:
        if not s["ok"]:
            print(f"FAIL  step {s['step']} (exit {s['exit_code']})")
    print(f"{'OK' if ok else 'FAILED'}: summary in {os.path.relpath(out, ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
