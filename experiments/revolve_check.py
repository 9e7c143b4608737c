"""Reproduce Griewank & Walther's binomial optimum (revolve) with our planner.

Revolve's model: a chain of l uniform steps, c checkpoint slots (the initial state in
one of them), the state being advanced is free, and the reverse of step i always re-runs
step i with taping from x_{i-1}. Its minimal number of forward advances is
``t(l, c) = r*l - binom(c + r, c + 1)`` with r the smallest integer such that
``binom(c + r, c) >= l`` (Algorithm 799, ACM TOMS 2000).

In our model (docs/theory.md) the same chain is: f_i = 1, b_i = 0, x_i = 1 byte,
g_i = G with G larger than any number of boundaries (a tape can never be kept across
another stage, so every backward re-runs its stage: that is revolve's taping), and a
budget of G + c + 1 bytes (c checkpoints plus the boundary being worked on). Then
``plan.total_cost - l`` must equal ``t(l, c)``: each stage's final run is its taped run.

Usage: python -m experiments.revolve_check [--max-steps 30] [--max-slots 8]
"""

from __future__ import annotations

import argparse
from math import comb

from tiny_backprop.plan import plan_chain

TAPE_BYTES = 10_000  # G: larger than any budget of boundaries used here


def revolve_forward_steps(steps: int, checkpoints: int) -> int:
    """Griewank & Walther's minimal number of forward advances t(l, c)."""
    if steps < 1 or checkpoints < 1:
        raise ValueError("steps and checkpoints must be >= 1")
    r = 0
    while comb(checkpoints + r, checkpoints) < steps:
        r += 1
    return r * steps - comb(checkpoints + r, checkpoints + 1)


def planner_forward_steps(steps: int, checkpoints: int) -> int:
    """Forward advances of our optimal plan for the revolve-equivalent chain."""
    budget = TAPE_BYTES + checkpoints + 1
    p = plan_chain(
        [1.0] * steps, [0.0] * steps, [1] * steps, [TAPE_BYTES] * steps, budget,
        slots=budget,  # unit = 1 byte: the discretisation is exact
    )
    return int(round(p.total_cost)) - steps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-steps", type=int, default=30)
    ap.add_argument("--max-slots", type=int, default=8)
    args = ap.parse_args(argv)
    mismatches = 0
    print(f"{'l':>4} " + " ".join(f"c={c:<9}" for c in range(1, args.max_slots + 1)))
    for l_steps in range(1, args.max_steps + 1):
        cells = []
        for c in range(1, args.max_slots + 1):
            ours, theirs = planner_forward_steps(l_steps, c), revolve_forward_steps(l_steps, c)
            mismatches += ours != theirs
            cells.append(f"{ours:>4}/{theirs:<4}" + ("" if ours == theirs else "!"))
        print(f"{l_steps:>4} " + " ".join(f"{x:<11}" for x in cells))
    print("ours/revolve forward advances;", "all equal" if not mismatches else f"{mismatches} differ")
    return 1 if mismatches else 0


if __name__ == "__main__":
    raise SystemExit(main())
