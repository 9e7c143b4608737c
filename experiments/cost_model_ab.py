"""Plans from the FLOP cost proxy vs the calibrated one (capture.api.COST_MODEL): peaks
and step times on a zoo model, interleaved in one process, 1 torch thread.

    python -m experiments.cost_model_ab PROFILE BUDGETS REPS [MODEL]   # small 0.5,0.3,0.15 7
"""

from __future__ import annotations

import importlib
import sys
import time

import torch

from experiments.tracking_ab import time_interleaved
from tiny_backprop import HCModule, zoo
from tiny_backprop.tree import Region


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    capi = importlib.import_module("tiny_backprop.capture.api")
    prof, budgets = argv[0], [float(b) for b in argv[1].split(",")]
    reps = int(argv[2]) if len(argv) > 2 else 5
    w = zoo.build(argv[3] if len(argv) > 3 else "gpt2", prof)
    model = w.model.train()

    def step(fn: torch.nn.Module) -> float:
        t0 = time.perf_counter()
        fn(*w.args).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    mods: dict[object, torch.nn.Module] = {"naive": model}
    old = capi.COST_MODEL
    try:
        for cm in ("flops", "calibrated"):
            capi.COST_MODEL = cm
            for b in budgets:
                hc = HCModule(model, b, track_memory=True)
                step(hc)
                st = hc.last_step_stats()
                hc.track_memory = False
                step(hc)
                mods[(cm, b)] = hc
                n_regions = sum(isinstance(n, Region) for n in hc.plan.tree)
                print(cm, b, "measured", st.measured_peak_bytes, "predicted",
                      st.predicted_peak_bytes, "top-level regions", n_regions, flush=True)
    finally:
        capi.COST_MODEL = old
    time_interleaved(mods, step, reps)


if __name__ == "__main__":
    main(sys.argv[1:])
