"""Step-time overhead of HCModule at a budget >= store-all against the plain model.

    python -m benchmarks.overhead --model gpt2 --profile medium --steps 8 [--threads 1]

One step = forward + loss.backward() + zeroing grads. Both modes run interleaved in the
same process after warm-up (so machine noise hits both alike); prints mean, std and CV%
per mode (seconds) and the overhead in percent.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from tiny_backprop import HCModule, zoo


def _step(fn, model, args) -> float:
    t0 = time.perf_counter()
    fn(*args).backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gpt2", choices=zoo.MODELS)
    ap.add_argument("--profile", default="small", choices=zoo.PROFILES)
    ap.add_argument("--budget", default="1.0", help="budget (fraction, bytes or '2GiB')")
    ap.add_argument("--planner", default="optimal",
                    help="planner (store_all: no recompute, the pure overhead)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 keeps times steady on a shared machine; 0 = torch's default)")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    a = ap.parse_args(argv)
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    budget: float | int | str = a.budget
    try:
        budget = float(a.budget) if "." in a.budget else int(a.budget)
    except ValueError:
        pass
    w = zoo.build(a.model, a.profile)
    model = w.model.train()
    hc = HCModule(model, budget, planner=a.planner)
    for _ in range(a.warmup):
        _step(model, model, w.args)
        _step(hc, model, w.args)
    times: dict[str, list[float]] = {"plain": [], "hc": []}
    for i in range(a.steps):  # interleave, alternating which goes first
        order = (("plain", model), ("hc", hc)) if i % 2 == 0 else (("hc", hc), ("plain", model))
        for name, fn in order:
            times[name].append(_step(fn, model, w.args))
    out: dict = {"model": a.model, "profile": a.profile, "budget": a.budget,
                 "steps": a.steps, "threads": torch.get_num_threads()}
    for name, ts in times.items():
        mean = statistics.mean(ts)
        std = statistics.stdev(ts) if len(ts) > 1 else 0.0
        out[name] = {"mean_s": mean, "std_s": std, "cv_pct": 100 * std / mean}
    out["overhead_pct"] = 100 * (out["hc"]["mean_s"] / out["plain"]["mean_s"] - 1)
    out["overhead_median_pct"] = 100 * (statistics.median(times["hc"])
                                        / statistics.median(times["plain"]) - 1)
    stats = hc.last_step_stats()
    out["recomputes"] = stats.n_recomputes
    out["measured_peak_bytes"] = stats.measured_peak_bytes
    out["predicted_peak_bytes"] = stats.predicted_peak_bytes
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{a.model}/{a.profile} budget={a.budget} steps={a.steps} "
              f"threads={out['threads']}")
        for name in ("plain", "hc"):
            r = out[name]
            print(f"  {name:5s} mean {r['mean_s']:.4f} s  std {r['std_s']:.4f} s  "
                  f"CV {r['cv_pct']:.1f}%")
        print(f"  overhead {out['overhead_pct']:+.2f}% (median {out['overhead_median_pct']:+.2f}%), "
              f"recomputes {out['recomputes']}")
    return out


if __name__ == "__main__":
    main()
