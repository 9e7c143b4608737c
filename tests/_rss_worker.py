"""Run in a separate process: peak and resident RSS of training steps (bytes, JSON).

Peak RSS is the kernel's high-water mark (VmHWM), reset before each step through
/proc/self/clear_refs, so no sampler races the step. Run with MALLOC_MMAP_THRESHOLD_=65536
so that freed activations go back to the OS and RSS follows live memory.

    python -m tests._rss_worker MODE BUDGET   (MODE: naive | tiny | cycle)
"""

from __future__ import annotations

import gc
import json
import re
import sys

import torch

from tiny_backprop import HCModule, zoo


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1)) * 1024


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def step(model: torch.nn.Module, batch: int, w) -> dict[str, int]:
    x, y = (a[:batch] for a in w.args)
    gc.collect()
    before = _status("VmRSS")
    _reset_peak()
    model(x, y).backward()
    peak = _status("VmHWM")
    for p in w.model.parameters():
        p.grad = None
    gc.collect()
    return {"before": before, "peak": peak, "after": _status("VmRSS")}


def main() -> None:
    mode, budget = sys.argv[1], float(sys.argv[2])
    torch.set_num_threads(1)
    w = zoo.build("mlp", "small", overrides=dict(batch=8192, d=128, n_layers=12))
    for p in w.model.parameters():  # gradients allocated once, before measuring
        p.grad = torch.zeros_like(p)
    out: dict[str, object] = {}
    # torch's fake-tensor stack (sympy, dynamo utilities) is imported by the first trace
    # of a process: a one-time cost of code, not of any shape; measured apart here
    before = _status("VmRSS")
    tiny = zoo.build("mlp", "small", overrides=dict(batch=2, d=8, n_layers=2))
    HCModule(tiny.model, 1.0)(*tiny.args).backward()
    out["library_import_bytes"] = _status("VmRSS") - before
    if mode == "auto":  # cap the CPU at `budget` x the store-all activations via reserve=
        import psutil

        from tiny_backprop import plan_model
        store_all = plan_model(w.model, w.args, {}, 1.0).predicted_peak_bytes
        cap = int(budget * store_all)
        # reserve everything available but the cap and the auto margin
        avail = psutil.virtual_memory().available
        margin = int(0.1 * avail) + (64 << 20)
        out["cap_bytes"] = cap
        out["store_all_bytes"] = store_all
        model = HCModule(w.model, "auto", reserve=max(0, avail - margin - cap))
    else:
        model = w.model if mode == "naive" else HCModule(w.model, budget)
    if mode == "cycle":
        sizes = [8192, 6144, 4096, 7168, 5120]
        out["steps"] = [step(model, sizes[i % 5], w) for i in range(20)]
        out["cached_plans"] = len(model._cache)
    else:
        out["steps"] = [step(model, 8192, w) for _ in range(3)]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
