"""The level-1 optimality experiment runs (tiny size) and its C answers are near the MILP."""

from __future__ import annotations

import json

import pytest


def test_keep_optimality_experiment_runs(tmp_path) -> None:
    pytest.importorskip("highspy")
    from experiments import keep_optimality

    out = tmp_path / "k"
    assert keep_optimality.main(["--random", "4", "--no-real", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert data["summary"]["cases"] == 12
    assert all(0.0 <= r["gap"] <= 0.01 for r in data["rows"])
    assert out.with_suffix(".csv").exists()
