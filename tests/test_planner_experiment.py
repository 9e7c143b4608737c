"""Smoke test of experiments/planner_optimality.py on one tiny DAG."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

pytest.importorskip("highspy")
pytest.importorskip("matplotlib")


def test_planner_optimality_experiment_runs(tmp_path: Path) -> None:
    from experiments import planner_optimality as po

    rows = po.run(graphs=1, nodes=5, fractions=[0.9], out=tmp_path, seed=1, time_limit=5.0)
    assert len(rows) == 1
    assert (tmp_path / "planner_optimality.csv").stat().st_size > 0
    assert (tmp_path / "planner_optimality.png").stat().st_size > 0
    r = rows[0]
    assert r["milp_status"] in ("Optimal", "Infeasible")
    if r["milp_status"] == "Optimal":
        assert r["milp_recompute"] >= -1e-6 and math.isfinite(r["milp_recompute"])
