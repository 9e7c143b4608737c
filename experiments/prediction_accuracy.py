"""The planner's predictions against what a step holds, per model and budget.

    python -m experiments.prediction_accuracy [--out results/prediction_accuracy.txt]

Rows: the 15 small zoo cases of ``tests/test_hc_module.py`` (5 models x budget 1.0, half
the store-all peak or the minimum where that is larger, and the minimum) and zoo gpt2
medium at budgets 0.7, 0.5, 0.3, 0.2 and 0.18. Each: HCModule with FLOP costs and
``track_memory=True``, two steps. Columns: the second step's accountant peak / the
predicted held peak (saved tensors, held inputs, kept outputs; never above 1.0 by
construction), and a third step's live activation bytes (`tests/_live_bytes.py`: every
storage its ops make, until freed, the gradients included) / the predicted peak with
working bytes (1.0 = exact).

Live bytes count the storages ops make; a CPU convolution's scratch (oneDNN's blocked
copies, allocated outside torch's allocator) is not among them. So the plans here leave
the scratch estimate out (`tiny_backprop.scratch`), like `tests/test_live_memory.py`
does; ``--with-scratch`` plans with it (the CNN rows then compare unlike things).
`tests/test_runtime_memory.py` and `experiments.pareto` measure the scratch via RSS.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent


def _ratios(model: torch.nn.Module, args: tuple, kwargs: dict, budget: float | int) -> str:
    from tests._live_bytes import step_peak_bytes
    from tiny_backprop import HCModule

    hc = HCModule(model.train(), budget, cost_model="flops", track_memory=True)
    for _ in range(2):
        out = hc(*args, **kwargs)
        (out if isinstance(out, torch.Tensor) else out[0]).backward()
        del out
        model.zero_grad()
    held = hc.last_step_stats().measured_peak_bytes / hc.plan.predicted_held_bytes
    live = step_peak_bytes(hc, model, args, kwargs) / hc.plan.predicted_peak_bytes
    return f"{held:>18.3f} {live:>14.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="also write the table to this file")
    ap.add_argument("--with-scratch", action="store_true",
                    help="plan with the CPU convolution scratch estimate (live bytes miss it)")
    a = ap.parse_args(argv)
    if a.with_scratch:
        return _table(a.out, "with the scratch estimate")
    from unittest import mock
    with mock.patch("tiny_backprop.planning.estimate_scratch", lambda *_a, **_k: {}):
        return _table(a.out, "scratch estimate left out")


def _table(out: str | None, scratch: str) -> int:
    sys.path.insert(0, str(ROOT))
    from tests._exact import min_budget
    from tests.test_hc_module import _build, store_all
    from tiny_backprop import zoo

    torch.set_num_threads(1)
    lines = [f"# python -m experiments.prediction_accuracy  ({time.strftime('%Y-%m-%d')}, "
             f"torch {torch.__version__}; {scratch})", "model             budget  accountant/held  live/predicted"]
    for name in zoo.MODELS:
        for budget in (1.0, 0.5, "min"):
            w = _build(name)
            b: float | int = budget if budget == 1.0 else 0  # type: ignore[assignment]
            low = min_budget(copy.deepcopy(w.model), w.args, w.kwargs)
            if budget == 0.5:
                b = max(int(0.5 * store_all(w)), low)
            elif budget == "min":
                b = low
            lines.append(f"{name + ' small':<17} {budget!s:<7} "
                         f"{_ratios(w.model, w.args, w.kwargs, b)}")
            print(lines[-1], flush=True)
    for budget in (0.7, 0.5, 0.3, 0.2, 0.18):
        w = zoo.build("gpt2", "medium")
        lines.append(f"{'gpt2 medium':<17} {budget!s:<7} "
                     f"{_ratios(w.model, w.args, w.kwargs, budget)}")
        print(lines[-1], flush=True)
    if out:
        Path(out).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
