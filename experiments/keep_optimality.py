"""Level-1 optimality: the C keep-set knapsack against an exact MILP (HiGHS).

    python -m experiments.keep_optimality [--random 50] [--out results/keep_optimality]

For 50 random item sets and 5 real blocks (the keepable ops of one block call of zoo
gpt2/transformer/unet/resnet medium and HF GPT-2, FLOP costs) at capacities of 10%, 30%
and 60% of the items' bytes, solves max sum(v x) s.t. sum(w x) <= capacity, x binary, with
HiGHS on exact bytes, and with `_C.knapsack` (bytes discretised into 4096 units, rounded
up). Reports the gap 1 - C/MILP per case (the C answer always fits: its gap is >= 0) and
writes <out>.csv and <out>.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import time
from pathlib import Path

from tiny_backprop import _C
from tiny_backprop.options import KNAPSACK_SLOTS, keepable

SHARES = (0.1, 0.3, 0.6)


def milp(weights: list[int], values: list[float], capacity: int) -> float:
    """Exact optimum of the 0/1 knapsack with HiGHS."""
    import highspy
    import numpy as np

    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("mip_rel_gap", 0.0)
    # one thread, as experiments.planner_optimality: HiGHS keeps one global thread pool,
    # and a later instance asking a different thread count fails to solve
    h.setOptionValue("threads", 1)
    n = len(weights)
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = n, 1
    lp.col_cost_ = np.array([-v for v in values], dtype=float)
    lp.col_lower_ = np.zeros(n)
    lp.col_upper_ = np.ones(n)
    lp.row_lower_ = np.array([-highspy.kHighsInf])
    lp.row_upper_ = np.array([float(capacity)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.arange(n + 1, dtype=np.int32)
    lp.a_matrix_.index_ = np.zeros(n, dtype=np.int32)
    lp.a_matrix_.value_ = np.array(weights, dtype=float)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * n
    h.passModel(lp)
    h.run()
    return -h.getInfo().objective_function_value


def real_blocks() -> list[tuple[str, list[int], list[float]]]:
    import torch
    import transformers

    from tiny_backprop import zoo
    from tiny_backprop.blocks import block_chain
    from tiny_backprop.trace import trace_model

    out = []
    for name in ("gpt2", "transformer", "unet", "resnet"):
        w = zoo.build(name, "medium")
        tr = trace_model(w.model.train(), w.args, w.kwargs)
        ch = block_chain(w.model, tr)
        items = keepable(tr, ch.calls[len(ch.calls) // 2], 1.0)
        out.append((f"zoo {name} medium block", [i.nbytes for i in items],
                    [i.cost for i in items]))
    m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        n_layer=4, n_embd=256, n_head=4, vocab_size=4000, n_positions=256)).train()
    ids = torch.randint(0, 4000, (4, 256))
    tr = trace_model(m, (), {"input_ids": ids, "labels": ids, "use_cache": False})
    ch = block_chain(m, tr)
    items = keepable(tr, ch.calls[1], 1.0)
    out.append(("HF GPT-2 block", [i.nbytes for i in items], [i.cost for i in items]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-real", action="store_true", help="random cases only (quick)")
    ap.add_argument("--out", default="results/tmp/keep_optimality")
    a = ap.parse_args(argv)
    rng = random.Random(a.seed)
    cases = []
    for k in range(a.random):
        n = rng.randint(5, 300)
        w = [rng.choice([rng.randint(1, 4096), rng.randint(1, 1 << 22)]) for _ in range(n)]
        v = [rng.uniform(0.0, 1e6) * (1.0 if rng.random() < 0.7 else 50.0) for _ in range(n)]
        cases.append((f"random {k} ({n} items)", w, v))
    if not a.no_real:
        cases += real_blocks()
    rows = []
    for name, w, v in cases:
        for share in SHARES:
            cap = int(share * sum(w))
            t0 = time.perf_counter()
            c_val, chosen = _C.knapsack(w, v, cap, KNAPSACK_SLOTS)
            c_time = time.perf_counter() - t0
            assert sum(w[i] for i in chosen) <= cap
            t0 = time.perf_counter()
            m_val = milp(w, v, cap)
            m_time = time.perf_counter() - t0
            gap = 0.0 if m_val <= 0 else 1.0 - c_val / m_val
            rows.append({"case": name, "items": len(w), "share": share, "capacity": cap,
                         "c_value": c_val, "milp_value": m_val, "gap": gap,
                         "c_seconds": c_time, "milp_seconds": m_time})
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=list(rows[0]))
        wr.writeheader()
        wr.writerows(rows)
    gaps = [r["gap"] for r in rows]
    summary = {"command": "python -m experiments.keep_optimality " + " ".join(argv or sys.argv[1:]),
               "date": time.strftime("%Y-%m-%d"), "cases": len(rows),
               "max_gap": max(gaps), "mean_gap": sum(gaps) / len(gaps),
               "over_1pct": sum(g > 0.01 for g in gaps),
               "real_max_gap": max((r["gap"] for r in rows
                                    if not r["case"].startswith("random")), default=None)}
    out.with_suffix(".json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
