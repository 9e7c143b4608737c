"""Run in a separate process: peak RSS growth of a zoo model's steps under HCModule and
the plan's predicted peak (bytes, JSON). Run with MALLOC_MMAP_THRESHOLD_=65536.

    python -m tests._rss_zoo NAME PROFILE PLANNER BUDGET
"""

from __future__ import annotations

import json
import sys

import torch

from tests._rss_worker import _reset_peak, _status
from tiny_backprop import HCModule, zoo


def main() -> None:
    name, profile, planner, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    torch.set_num_threads(1)
    w = zoo.build(name, profile)
    model = w.model.train()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    hc = HCModule(model, budget, planner=planner, cost_model="flops")
    growth = []
    for _ in range(3):
        before = _status("VmRSS")
        _reset_peak()
        out = hc(*w.args, **w.kwargs)
        (out if isinstance(out, torch.Tensor) else out[0]).backward()
        del out
        growth.append(_status("VmHWM") - before)
        for p in model.parameters():
            p.grad.zero_()
    print(json.dumps({"growth": growth, "predicted": hc.plan.predicted_peak_bytes,
                      "predicted_held": hc.plan.predicted_held_bytes}))


if __name__ == "__main__":
    main()
