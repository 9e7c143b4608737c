"""End-to-end test of experiments/planner_optimality.py on tiny DAGs."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest

pytest.importorskip("highspy")
pytest.importorskip("matplotlib")

from experiments import planner_optimality as po  # noqa: E402

EPS = 1e-6


def test_experiment_end_to_end(tmp_path: Path) -> None:
    rows = po.run(graphs=1, nodes=6, fractions=[1.0, 0.7], out=tmp_path, seed=3,
                  time_limit=10.0, chain_graphs=1)
    assert len(rows) == 4
    for name in ("csv", "md", "png"):
        assert (tmp_path / f"planner_optimality.{name}").stat().st_size > 0
    assert "2026-11-25" in (tmp_path / "planner_optimality.md").read_text()
    for r in rows:
        assert r["stages"] >= 2, "saved values must give the coarsener clean cuts"
        if r["fraction"] == 1.0:  # budget >= both models' store-all peaks
            assert r["budget"] >= max(r["chain_peak"], r["milp_peak"])
            assert r["ours_recompute"] == 0.0
            assert r["milp_status"] == "Optimal" and r["milp_recompute"] == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_milp_is_a_relaxation_on_saved_chains(seed: int) -> None:
    """On a pure chain with every value saved (every node its own stage, no unseen
    intra-stage transients) every chain schedule is a MILP schedule, so the proven
    MILP optimum can never exceed our plan's recompute cost; the MILP's schedule must
    also replay within the budget at the cost it claims."""
    ir = po.random_dag(6, random.Random(seed), p_saved=1.0, skips=False)
    _, pred, milp_peak = po.reference_peaks(ir)
    assert abs(milp_peak - pred) <= ir.nodes[-1].output_bytes  # only the scalar loss differs
    for frac in (1.0, 0.7, 0.55):
        budget = int(frac * max(pred, milp_peak))
        rc, stages, _ = po.ours(ir, budget)
        assert stages == len(ir.nodes) - 1  # the input joins the first stage
        res = po.milp_optimum(ir, budget, 10.0)
        if res.status != "Optimal":
            continue
        cost, peak = po.replay(ir, res.computed, res.held)
        assert peak <= budget and math.isclose(cost, res.recompute, abs_tol=EPS)
        assert res.recompute <= rc + EPS
        if frac == 1.0:
            assert rc == 0.0 and res.recompute == 0.0


def test_replay_rejects_a_broken_schedule() -> None:
    ir = po.random_dag(5, random.Random(2), p_saved=1.0, skips=False)
    res = po.milp_optimum(ir, 10**9, 10.0)
    held = [list(h) for h in res.held]
    held[-2] = [0]  # backward of node 1 without its saved output: invalid
    with pytest.raises(AssertionError):
        po.replay(ir, res.computed, held)
