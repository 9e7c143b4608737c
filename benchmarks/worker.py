"""Run one mode of one benchmark in this process and write a BenchmarkResult as JSON.

Usage (the runner does this; one process per mode and trial so peaks are its own)::

    python -m benchmarks.worker --spec '{"benchmark": ..., "mode": ...}' --out result.json

Sequence: a seeded first step (gradients compared with a naive run of a fresh copy of the
same model: ``grads_match_naive``; bytes saved for backward counted), ``warmup`` steps,
then ``steps`` measured steps (forward + loss.backward + zero grads) under the memory
probes. ``loss_value`` is the first, seeded step's loss, comparable across modes.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import sys
import time
import traceback
from typing import Any

import torch

from benchmarks.measure import (
    GPUUtilSampler,
    RSSSampler,
    SavedTensorCounter,
    step_stats,
    synchronize,
    time_steps,
)
from benchmarks.modes import ModeUnavailable, apply_mode
from benchmarks.results import BenchmarkResult
from benchmarks.workloads import build_workload


def is_oom(exc: BaseException) -> bool:
    """True for torch.OutOfMemoryError, MemoryError and RuntimeErrors saying 'out of memory'."""
    oom_type = getattr(torch, "OutOfMemoryError", None)
    if oom_type is not None and isinstance(exc, oom_type):
        return True
    if isinstance(exc, MemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _first_step(fn: Any, wl: Any, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    loss = fn(*wl.args, **wl.kwargs)
    loss.backward()
    return loss.detach()


def _naive_reference(spec: dict[str, Any], device: str) -> tuple[float, list[torch.Tensor | None]]:
    """Loss and gradients (cloned) of one seeded step of an unwrapped copy of the model."""
    wl = build_workload(spec["workload"], seed=spec["seed"], device=device)
    loss = _first_step(wl.model, wl, spec["seed"])
    grads = [None if p.grad is None else p.grad.detach().clone() for p in wl.model.parameters()]
    return float(loss), grads


def _compare(params: list[torch.Tensor], ref: list[torch.Tensor | None]) -> dict[str, Any]:
    equal, close, max_diff = True, True, 0.0
    for p, g in zip(params, ref):
        if (p.grad is None) != (g is None):
            return {"grads_match_naive": False, "grads_bitwise_equal": False,
                    "grad_max_abs_diff": None}
        if g is None:
            continue
        equal = equal and torch.equal(p.grad, g)
        close = close and torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)
        max_diff = max(max_diff, float((p.grad - g).abs().max()))
    return {"grads_match_naive": close, "grads_bitwise_equal": equal, "grad_max_abs_diff": max_diff}


def run(spec: dict[str, Any]) -> BenchmarkResult:
    """Measure one (benchmark, mode, trial); errors become a result with status != ok."""
    res = BenchmarkResult(
        benchmark=spec["benchmark"], mode=spec["mode"], trial=spec["trial"],
        profile=spec["workload"]["profile"], variant=spec.get("variant", ""),
        device=spec["device"],
    )
    try:
        _measure(spec, res)
    except ModeUnavailable as exc:
        res.status, res.error = "error", str(exc)
    except BaseException as exc:  # noqa: BLE001 - every failure must become a row
        if isinstance(exc, KeyboardInterrupt):
            raise
        res.status = "oom" if is_oom(exc) else "error"
        res.error = f"{type(exc).__name__}: {exc}"
        res.extra_metrics["traceback"] = traceback.format_exc(limit=6)
    return res


def _measure(spec: dict[str, Any], res: BenchmarkResult) -> None:
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    device = torch.device(spec["device"])
    mode = spec["mode"]
    em = res.extra_metrics

    ref = None if mode == "naive" else _naive_reference(spec, spec["device"])
    gc.collect()

    wl = build_workload(spec["workload"], seed=spec["seed"], device=spec["device"])
    model = wl.model
    params = list(model.parameters())
    em["n_params"] = sum(p.numel() for p in params)
    em["config"] = wl.config
    t0 = time.perf_counter()
    fn, info = apply_mode(mode, model, model_name=spec["workload"]["model"],
                          budget=spec.get("budget", 0.5),
                          compile_budget=spec.get("compile_budget", 0.5))
    em["setup_time_s"] = time.perf_counter() - t0
    em.update(info)

    # First step: seeded, gradients checked, saved-for-backward bytes counted.
    # compile_budget traces under the hooks; tiny captures in its first forward and reports
    # its own held bytes (last_step_stats): neither gets the outer counter.
    counter = None if mode in ("compile_budget", "tiny") else SavedTensorCounter(exclude=params)
    if mode == "tiny":  # count held bytes in the first step only; timed steps run untracked
        fn.track_memory = True
    t0 = time.perf_counter()
    if counter is not None:
        with counter:
            loss = _first_step(fn, wl, spec["seed"])
    else:
        loss = _first_step(fn, wl, spec["seed"])
    synchronize(device)
    em["first_step_time_s"] = time.perf_counter() - t0
    res.loss_value = float(loss)
    if ref is None:
        em.update(grads_match_naive=True, grads_bitwise_equal=True, grad_max_abs_diff=0.0)
    else:
        em.update(_compare(params, ref[1]))
        em["naive_loss_value"] = ref[0]
    ref = None
    first_stats = None
    if mode == "tiny":
        first_stats = _as_dict(fn.last_step_stats())
        fn.track_memory = False  # HCModule's default
    if counter is not None:
        res.held_activation_bytes = counter.peak_bytes
        em["held_activation_source"] = "saved_tensors_hooks"
        if mode in ("checkpoint", "checkpoint_seq", "hf_checkpointing"):
            em["held_activation_note"] = "lower bound: checkpoint's own hooks hide its tensors"
    model.zero_grad(set_to_none=True)

    def step() -> None:
        out = fn(*wl.args, **wl.kwargs)
        out.backward()
        model.zero_grad(set_to_none=True)

    time_steps(step, spec["warmup"], device)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base_alloc = torch.cuda.memory_allocated(device)
        with GPUUtilSampler(device.index or 0) as util:
            times = time_steps(step, spec["steps"], device)
        res.peak_mem_bytes = torch.cuda.max_memory_allocated(device)
        res.peak_mem_reserved_bytes = torch.cuda.max_memory_reserved(device)
        res.gpu_utilization_pct = util.mean_pct
        em["cuda_peak_growth_bytes"] = res.peak_mem_bytes - base_alloc
    else:
        with RSSSampler() as rss:
            times = time_steps(step, spec["steps"], device)
        res.peak_cpu_bytes = rss.peak_growth_bytes
        em["rss_baseline_bytes"] = rss.baseline_bytes
        em["rss_samples"] = rss.samples
    em.update(step_stats(times))
    em["step_times_s"] = times
    res.wall_time_s = em["step_time_mean_s"]
    if mode == "tiny":
        _tiny_stats(fn, res, first_stats)


# HCModule.last_step_stats() field -> our field (the runtime's StepStats names first).
TINY_STAT_ALIASES = {
    "measured_peak_bytes": "held_activation_bytes",
    "held_activation_bytes": "held_activation_bytes",
    "predicted_peak_bytes": "predicted_peak_bytes",
    "recompute_seconds": "recompute_time_s",
    "recompute_time_s": "recompute_time_s",
    "plan_time_s": "plan_time_s",
}


def _as_dict(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return dict(obj)
    if dataclasses.is_dataclass(obj):
        return dataclasses.asdict(obj)
    return {k: getattr(obj, k) for k in dir(obj) if not k.startswith("_")
            and isinstance(getattr(obj, k, None), (int, float, str, bool, type(None)))}


def _tiny_stats(hc: Any, res: BenchmarkResult, first: dict[str, Any] | None = None) -> None:
    """Copy what HCModule reports about its last step (None where it reports nothing);
    the measured peak comes from the tracked first step `first` when the last step was
    not counted (track_memory=False, the default)."""
    stats_fn = getattr(hc, "last_step_stats", None)
    stats = _as_dict(stats_fn()) if callable(stats_fn) else {}
    if stats.get("measured_peak_bytes") is None and first:
        stats["measured_peak_bytes"] = first.get("measured_peak_bytes")
        stats["measured_peak_source"] = "first step (track_memory=True)"
    plan = getattr(hc, "plan", None)
    if plan is not None:
        stats.setdefault("plan_time_s", getattr(plan, "plan_time_s", None))
        if stats.get("predicted_peak_bytes") is None:
            stats["predicted_peak_bytes"] = getattr(plan, "predicted_peak_bytes", None)
        res.extra_metrics["plan"] = {k: getattr(plan, k, None) for k in (
            "planner", "num_stages", "budget_bytes", "recompute_cost", "total_cost", "slots")}
    for key, ours in TINY_STAT_ALIASES.items():
        if stats.get(key) is not None:
            setattr(res, ours, stats[key])
    if any(stats.get(k) is not None for k in ("measured_peak_bytes", "held_activation_bytes")):
        res.extra_metrics["held_activation_source"] = "HCModule.last_step_stats"
        res.extra_metrics.pop("held_activation_note", None)
    res.extra_metrics["tiny_stats"] = {k: v for k, v in stats.items()
                                       if isinstance(v, (int, float, str, bool, type(None)))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", required=True, help="JSON spec (see benchmarks.runner)")
    ap.add_argument("--out", required=True, help="path of the result JSON to write")
    args = ap.parse_args(argv)
    result = run(json.loads(args.spec))
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result.to_dict(), fh, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
