"""What the optimal DP's memory units cost: plans of one block chain at several slots.

    python -m experiments.slots_check [--workload hf_llama] [--budgets 0.286 0.3 0.4]
                                      [--slots 512 2048 8192] [--out results/slots_check.txt]

Traces `experiments.pareto.build(workload)` once on fake tensors, builds its per-block
chain (FLOP costs, as `HCModule(..., cost_model="flops")` plans it, without op-level
options) and plans it at each budget (a fraction of the chain's store-all peak) with
each number of slots, and with the default (`tiny_backprop.plan.auto_slots`). Prints the
predicted peak (MiB), the recompute cost (% of one forward + backward) and the DP's time.
The DP rounds every size up to budget/slots bytes, so coarse units miss plans that fit
by less than a few units.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workload", default="hf_llama")
    ap.add_argument("--budgets", nargs="+", type=float, default=[0.286, 0.3, 0.4])
    ap.add_argument("--slots", nargs="+", type=int, default=[512, 2048, 8192])
    ap.add_argument("--out", default=None, help="also write the table to this file")
    a = ap.parse_args(argv)
    from experiments.pareto import build
    from tiny_backprop.blocks import block_chain
    from tiny_backprop.plan import auto_slots, plan_chain
    from tiny_backprop.planning import _chain_plan
    from tiny_backprop.scratch import estimate_scratch
    from tiny_backprop.trace import trace_model

    model, loss_of, _ = build(a.workload)
    calls: list[tuple] = []

    class _Grab(torch.nn.Module):  # the loss function's call of the model, traced
        def forward(self, *args: object, **kwargs: object) -> object:
            calls.append((args, kwargs))
            return model(*args, **kwargs)

    with torch.no_grad():
        loss_of(_Grab())
    args, kwargs = calls[0]
    trace = trace_model(model, args, kwargs)
    chain = block_chain(model, trace, scratch=estimate_scratch(trace))
    full = _chain_plan(chain, 1.0, "store_all").peak_bytes
    n = len(chain.forward_cost)
    lines = [f"# python -m experiments.slots_check --workload {a.workload}  "
             f"({time.strftime('%Y-%m-%d')}, torch {torch.__version__}; {n} stages, "
             f"default slots {auto_slots(n)}; store-all {full / 2**20:.2f} MiB)",
             f"{'budget':>7} {'slots':>7} {'peak MiB':>9} {'recompute %':>12} {'DP ms':>7}"]
    for frac in a.budgets:
        for slots in [*a.slots, None]:
            t0 = time.perf_counter()
            p = plan_chain(list(chain.forward_cost), list(chain.backward_cost),
                           list(chain.input_bytes), list(chain.saved_bytes), int(frac * full),
                           slots=slots, must_keep=list(chain.must_keep), transient=True,
                           live_intervals=list(chain.live_intervals) or None,
                           working_bytes=list(chain.working_bytes) or None,
                           cut_before=list(chain.cut_before) or None)
            ms = 1e3 * (time.perf_counter() - t0)
            base = sum(chain.forward_cost) + sum(chain.backward_cost)
            label = str(slots) if slots is not None else f"{p.slots}*"
            lines.append(f"{frac:>7} {label:>7} {p.peak_bytes / 2**20:>9.2f} "
                         f"{100 * p.recompute_cost / base:>12.1f} {ms:>7.1f}")
            print(lines[-1], flush=True)
    lines.append("* = the default (auto_slots)")
    if a.out:
        Path(a.out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
