"""Measured memory: the accountant against the plan, RSS in a separate process, CUDA."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch

from tiny_backprop import BudgetError, HCModule, zoo
from tiny_backprop import hc_module as hc_mod


def _min_budget(w) -> int:
    cap = hc_mod._capture_model(w.model, w.args, {})
    try:
        hc_mod._make_plan(cap.ir, 1, "optimal", None)
    except BudgetError as e:
        return e.minimum_bytes
    raise AssertionError("a 1-byte budget was feasible")


MODELS = ["gpt2", "transformer", "mlp", "resnet", "unet"]


def _check_step(hc: HCModule, w) -> None:
    hc(*w.args).backward()
    stats = hc.last_step_stats()
    # measured never above the budget, and within 10% of the plan's prediction
    assert 0 < stats.measured_peak_bytes <= hc.plan.budget_bytes
    assert stats.predicted_peak_bytes == hc.plan.peak_bytes
    assert abs(stats.measured_peak_bytes - stats.predicted_peak_bytes) <= 0.1 * stats.predicted_peak_bytes
    if hc.plan.recompute_cost > 0:
        assert stats.n_recomputes > 0 and stats.recompute_seconds > 0


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("budget", [1.0, 0.5, 0.3])
def test_measured_peak_within_budget_and_matches_prediction(name, budget) -> None:
    w = zoo.build(name, "small")
    _check_step(HCModule(w.model, budget, track_memory=True), w)


@pytest.mark.parametrize("name", MODELS)
def test_measured_peak_matches_prediction_at_minimum(name) -> None:
    w = zoo.build(name, "small")
    _check_step(HCModule(w.model, _min_budget(w), track_memory=True), w)


_RSS_SCRIPT = textwrap.dedent("""
    import resource, sys, threading, time
    import psutil, torch
    from tiny_backprop import HCModule, zoo
    mode = sys.argv[1]
    torch.set_num_threads(2)
    w = zoo.build("mlp", "small", overrides=dict(batch=32768, d=128, n_layers=24))
    model = HCModule(w.model, 0.3) if mode == "tiny" else w.model
    proc = psutil.Process()
    model(*w.args).backward()  # warm-up (and plan)
    for p in w.model.parameters():
        p.grad = None
    base = proc.memory_info().rss
    peak = [base]
    stop = False
    def sample():
        while not stop:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)
    t = threading.Thread(target=sample); t.start()
    model(*w.args).backward()
    stop = True; t.join()
    print(peak[0] - base)
""")


@pytest.mark.slow
def test_rss_falls_at_budget_0_3() -> None:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    grow = {}
    for mode in ("naive", "tiny"):
        out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, mode], env=env, check=True,
                             capture_output=True, text=True, timeout=300)
        grow[mode] = int(out.stdout.strip().splitlines()[-1])
    # naive activations: 24 blocks x (fc1 + tanh + residual: 5 x 128 floats) x 32768 rows
    act = grow["naive"]
    assert act > 1 << 30, grow
    assert grow["naive"] - grow["tiny"] >= 0.4 * act, grow


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("budget", [0.5, 0.3])
def test_cuda_peak_memory_falls(budget) -> None:
    w = zoo.build("gpt2", "small", device="cuda")
    model = w.model

    def peak(fn) -> int:
        fn(*w.args).backward()  # warm-up
        torch.cuda.synchronize()
        model.zero_grad(set_to_none=False)
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn(*w.args).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base

    naive = peak(model)
    hc = HCModule(model, budget, track_memory=True)
    tiny = peak(hc)
    stats = hc.last_step_stats()
    assert stats.measured_peak_bytes <= hc.plan.budget_bytes
    assert tiny < naive
