"""Step time of HCModule with track_memory=True vs False (and naive), interleaved in one
process, 1 torch thread.

    python -m experiments.tracking_ab PROFILE BUDGETS REPS    # e.g. medium 0.5,0.15 5
"""

from __future__ import annotations

import statistics
import sys
import time

import torch

from tiny_backprop import HCModule, zoo


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    prof, budgets, reps = argv[0], [float(b) for b in argv[1].split(",")], int(argv[2])
    w = zoo.build("gpt2", prof)
    model = w.model.train()

    def step(fn: torch.nn.Module) -> float:
        t0 = time.perf_counter()
        fn(*w.args).backward()
        model.zero_grad(set_to_none=True)
        return time.perf_counter() - t0

    mods: dict[object, torch.nn.Module] = {"naive": model}
    for b in budgets:
        for tr in (True, False):
            hc = HCModule(model, b, track_memory=tr)
            step(hc)
            step(hc)
            mods[(b, "tracked" if tr else "untracked")] = hc
    time_interleaved(mods, step, reps)


def time_interleaved(mods: dict, step, reps: int) -> None:
    """Time every module `reps` times, alternating the order each round, and print the
    median (s), its ratio to mods["naive"], the mean (s) and the CV%."""
    times: dict[object, list[float]] = {k: [] for k in mods}
    for i in range(reps):
        for k in (list(mods) if i % 2 == 0 else list(mods)[::-1]):
            times[k].append(step(mods[k]))
    nv = statistics.median(times["naive"])
    for k, ts in times.items():
        m = statistics.median(ts)
        print(k, f"median {m:.4f}s x{m / nv:.3f} mean {statistics.mean(ts):.4f} "
                 f"CV {100 * statistics.stdev(ts) / statistics.mean(ts):.1f}%")


if __name__ == "__main__":
    main(sys.argv[1:])
