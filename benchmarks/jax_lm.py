"""JAX LM benchmark: XLA temp bytes and step time of one gradient step, per mode.

Modes: ``jax.grad``; ``jax.checkpoint`` per block (plain, and with the
``dots_saveable`` policy); ``lax.scan`` over a checkpointed block; and
``tiny_backprop.jax.height_compressed_grad`` at several budgets (fractions of the
store-all peak). Temp bytes come from XLA's memory analysis of the compiled gradient
(``jax.jit(g).lower(...).compile().memory_analysis().temp_size_in_bytes``); step time is
the wall time of the jitted gradient after warm-up (mean, std, CV% over ``--steps``).

    python -m benchmarks.jax_lm --out results
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax

from benchmarks import jax_models as M
from benchmarks.results import _cpu_model
from tiny_backprop.jax import height_compressed_grad, plan

BUDGETS = (1.0, 0.5, 0.3, 0.2, 0.15)


def _time_steps(fn: Callable[..., Any], args: Sequence[Any], warmup: int, steps: int) -> list[float]:
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t0)
    return out


def run(layers: int, batch: int, seq: int, width: int, vocab: int, budgets: Sequence[float],
        warmup: int, steps: int) -> list[dict[str, Any]]:
    """One row per mode: temp bytes (XLA), predicted peak (tiny), step time (s)."""
    f, params, inputs = M.init_gpt(layers=layers, batch=batch, seq=seq, width=width, vocab=vocab)
    stacked = M.stack_blocks(params)
    modes: list[tuple[str, Callable[..., Any], Any, float | None]] = [
        ("jax.grad", jax.grad(f), params, None),
        ("checkpoint_per_block", jax.grad(M.gpt_loss_checkpoint), params, None),
        ("checkpoint_per_block_dots_saveable", jax.grad(
            lambda p, t, k: M.gpt_loss_checkpoint(
                p, t, k, policy=jax.checkpoint_policies.dots_saveable)), params, None),
        ("scan_checkpoint", jax.grad(M.gpt_loss_scan), stacked, None),
    ]
    for b in budgets:
        modes.append((f"tiny@{b}", height_compressed_grad(f, budget=b), params, b))
    rows = []
    ref_temp = None
    for name, g, p, b in modes:
        args = (p, *inputs)
        compiled = jax.jit(g).lower(*args).compile()
        temp = int(compiled.memory_analysis().temp_size_in_bytes)
        if ref_temp is None:
            ref_temp = temp
        times = _time_steps(compiled, args, warmup, steps)
        mean = statistics.fmean(times)
        std = statistics.stdev(times) if len(times) > 1 else 0.0
        row: dict[str, Any] = {
            "mode": name, "budget": b, "temp_bytes": temp,
            "temp_vs_jax_grad": round(temp / ref_temp, 4),
            "step_s_mean": mean, "step_s_std": std,
            "step_cv_pct": 100.0 * std / mean if mean else 0.0,
        }
        if b is not None:
            pl = plan(f, params, *inputs, budget=b)
            row["predicted_peak_bytes"] = pl.peak_bytes
            row["predicted_vs_xla"] = round(pl.peak_bytes / temp, 4)
            row["recompute_cost_pct"] = round(
                100.0 * pl.recompute_cost / (pl.total_cost - pl.recompute_cost), 2)
            row["stages"] = pl.num_stages
        rows.append(row)
        print(f"{name:38s} temp {temp / 2**20:9.2f} MiB ({row['temp_vs_jax_grad']:.3f}x)  "
              f"step {mean * 1e3:8.2f} ms +- {std * 1e3:.2f} ({row['step_cv_pct']:.1f}%)"
              + (f"  predicted {row['predicted_peak_bytes'] / 2**20:.2f} MiB"
                 if b is not None else ""), flush=True)
    return rows


#: The test-size models of tests/test_jax.py.
CHECK_MODELS = {
    "mlp": lambda: M.init_mlp(layers=6, batch=32, width=64),
    "resmlp": lambda: M.init_resmlp(blocks=6, batch=64, width=64, hidden=256),
    "gpt": lambda: M.init_gpt(layers=2, batch=4, seq=32, width=64, vocab=128),
}


def _max_diff(a: Any, b: Any) -> float:
    import jax.numpy as jnp

    return max(float(jnp.max(jnp.abs(x - y))) for x, y in
               zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)))


def grad_check(budgets: Sequence[float]) -> list[dict[str, Any]]:
    """Per test model: max |grad - jax.grad| for jax.checkpoint and tiny; XLA temp bytes."""
    rows = []
    for name, init in CHECK_MODELS.items():
        f, p, a = init()
        ref = jax.jit(jax.grad(f))(p, *a)
        ck = jax.jit(jax.grad(jax.checkpoint(f)))(p, *a)
        ref_temp = M.temp_bytes(jax.grad(f), p, *a)
        for b in budgets:
            g = height_compressed_grad(f, budget=b)
            got = jax.jit(g)(p, *a)
            temp = M.temp_bytes(g, p, *a)
            pl = plan(f, p, *a, budget=b)
            row = {"model": name, "budget": b, "max_abs_diff_tiny": _max_diff(got, ref),
                   "max_abs_diff_checkpoint": _max_diff(ck, ref),
                   "temp_bytes_jax_grad": ref_temp, "temp_bytes_tiny": temp,
                   "temp_vs_jax_grad": round(temp / ref_temp, 4),
                   "predicted_peak_bytes": pl.peak_bytes,
                   "predicted_vs_xla": round(pl.peak_bytes / temp, 4)}
            rows.append(row)
            print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in row.items()), flush=True)
    return rows


def formulations(budgets: Sequence[float]) -> list[dict[str, Any]]:
    """XLA temp bytes of each way of applying the same plan (tiny_backprop.jax._program)."""
    from tiny_backprop.jax._api import _make, trace
    from tiny_backprop.jax._program import MODES

    rows = []
    models = {"resmlp": lambda: M.init_resmlp(blocks=12, batch=256, width=256, hidden=1024),
              "gpt": lambda: M.init_gpt(layers=4, batch=8, seq=128, width=128, vocab=256)}
    for name, init in models.items():
        f, p, a = init()
        ref = M.temp_bytes(jax.grad(f), p, *a)
        t0 = time.perf_counter()
        aware = trace(f, (p, *a), 1.0)
        plan_s = time.perf_counter() - t0
        naive = trace(f, (p, *a), 1.0, fusion_aware=False)
        rows.append({"model": name, "equations": len(aware.graph.closed.jaxpr.eqns),
                     "stages": aware.plan.num_stages, "trace_and_plan_s": round(plan_s, 3),
                     "jax.grad": ref, "predicted_store_all_fusion_aware": aware.plan.peak_bytes,
                     "predicted_store_all_naive": naive.plan.peak_bytes})
        print(rows[-1], flush=True)
        for b in budgets:
            row: dict[str, Any] = {"model": name, "budget": b, "jax.grad": ref}
            for mode in MODES:
                g = _make(f, b, 0, False, "optimal", 64, False, mode)
                row[mode] = M.temp_bytes(g, p, *a)
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return rows


def _meta(argv: Sequence[str] | None) -> dict[str, Any]:
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": "python -m benchmarks.jax_lm " + " ".join(sys.argv[1:] if argv is None
                                                            else list(argv)),
        "hardware": {"cpu": _cpu_model(), "cores": os.cpu_count(),
                     "devices": [str(d) for d in jax.devices()]},
        "jax_version": jax.__version__,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "XLA_FLAGS") if k in os.environ},
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=256)
    ap.add_argument("--budgets", type=float, nargs="+", default=list(BUDGETS))
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="", help="directory for jax_lm.json / jax_lm.csv")
    ap.add_argument("--grad-check", action="store_true",
                    help="instead: gradients and temp bytes of the test-size models "
                         "(writes jax_grad_check.json)")
    ap.add_argument("--formulations", action="store_true",
                    help="instead: temp bytes of each region formulation "
                         "(writes jax_formulations.json)")
    a = ap.parse_args(argv)
    if a.formulations:
        rows = formulations(a.budgets)
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, "jax_formulations.json"), "w") as fh:
                json.dump({"meta": _meta(argv), "rows": rows}, fh, indent=2)
        return 0
    if a.grad_check:
        rows = grad_check(a.budgets)
        if a.out:
            os.makedirs(a.out, exist_ok=True)
            with open(os.path.join(a.out, "jax_grad_check.json"), "w") as fh:
                json.dump({"meta": _meta(argv), "rows": rows}, fh, indent=2)
        return 0
    rows = run(a.layers, a.batch, a.seq, a.width, a.vocab, a.budgets, a.warmup, a.steps)
    if a.out:
        os.makedirs(a.out, exist_ok=True)
        meta = _meta(argv)
        meta.update({
            "model": {"layers": a.layers, "batch": a.batch, "seq": a.seq, "width": a.width,
                      "vocab": a.vocab, "n_head": 4, "dropout": 0.1},
            "warmup": a.warmup, "steps": a.steps,
        })
        with open(os.path.join(a.out, "jax_lm.json"), "w") as fh:
            json.dump({"meta": meta, "rows": rows}, fh, indent=2)
        keys = sorted({k for r in rows for k in r}, key=lambda k: list(rows[-1]).index(k)
                      if k in rows[-1] else 99)
        with open(os.path.join(a.out, "jax_lm.csv"), "w", newline="") as fh:
            fh.write(f"# {meta['command']} | {meta['date']} | {meta['hardware']['cpu']} | "
                     f"jax {meta['jax_version']}\n")
            w = csv.DictWriter(fh, fieldnames=keys)
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
