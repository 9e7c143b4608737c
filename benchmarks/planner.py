"""Plan time of the C optimal planner vs the pure-Python reference.

    python -m benchmarks.planner [--lengths 10 50 100 200 400] [--slots 128 512]

Chains are random heterogeneous stages (seeded); the budget is a fraction of the
store-all peak (default 0.3, raised to the exact minimum if that is higher). The Python
reference runs on the same discretised instance only where it is cheap (estimated work
<= --ref-limit); elsewhere its time is extrapolated from the largest measured case by
the L^3 * slots work ratio and marked with '~'. Times are seconds.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from tiny_backprop import _C
from tiny_backprop import _reference_planner as R
from tiny_backprop.plan import store_all_bytes


def make_chain(n: int, seed: int = 0) -> tuple[list[float], list[float], list[int], list[int]]:
    """A random chain: forward cost ~U(0.5, 2), backward 2x, sizes in bytes."""
    rng = random.Random(seed + n)
    f = [rng.uniform(0.5, 2.0) for _ in range(n)]
    b = [2.0 * v for v in f]
    x = [rng.randint(1, 100) * 1024 for _ in range(n)]
    g = [rng.randint(50, 400) * 1024 for _ in range(n)]
    return f, b, x, g


def time_c(f, b, x, g, budget: int, slots: int) -> tuple[float, float]:
    """Best-of-3 (or one run if slow) wall time of the C optimal planner; (seconds, cost)."""
    best, cost = float("inf"), float("nan")
    for _ in range(3):
        t0 = time.perf_counter()
        res = _C.plan_chain(f, b, x, g, budget, slots=slots)
        dt = time.perf_counter() - t0
        best = min(best, dt)
        cost = res[1] if res is not None else float("inf")
        if dt > 0.5:
            break
    return best, cost


def time_ref(f, b, x, g, budget: int, slots: int) -> tuple[float, float]:
    """Wall time of the Python reference on the same discretised instance."""
    xs, gs, m = R.discretise(x, g, budget, slots)
    t0 = time.perf_counter()
    cost, _ = R.optimal(f, b, xs, gs, m)
    return time.perf_counter() - t0, cost


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--lengths", type=int, nargs="+", default=[10, 50, 100, 200, 400])
    ap.add_argument("--slots", type=int, nargs="+", default=[128, 512])
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--ref-limit", type=float, default=3e6,
                    help="run the Python reference only when L^3*slots/6 <= this")
    args = ap.parse_args(argv)

    print(f"{'L':>5} {'slots':>5} {'C (s)':>10} {'Python (s)':>12} {'speedup':>9}  agree")
    measured: tuple[float, float] | None = None  # (work, seconds) of the largest reference run
    for slots in args.slots:
        for n in args.lengths:
            f, b, x, g = make_chain(n)
            mb, _, _ = _C.min_budget(f, b, x, g)
            budget = max(mb, int(args.fraction * store_all_bytes(x, g)))
            tc, cc = time_c(f, b, x, g, budget, slots)
            work = n**3 * slots / 6
            if work <= args.ref_limit:
                tp, cp = time_ref(f, b, x, g, budget, slots)
                if measured is None or work > measured[0]:
                    measured = (work, tp)
                ref = f"{tp:12.4f}"
                agree = "yes" if abs(cp - cc) <= 1e-9 * max(1.0, abs(cc)) else f"NO ({cp} vs {cc})"
            elif measured is not None:
                tp = measured[1] * work / measured[0]
                ref, agree = f"~{tp:11.1f}", "-"
            else:
                tp, ref, agree = float("nan"), f"{'-':>12}", "-"
            speed = f"{tp / tc:8.0f}x" if tc > 0 and tp == tp else f"{'-':>9}"
            print(f"{n:5d} {slots:5d} {tc:10.4f} {ref} {speed}  {agree}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
