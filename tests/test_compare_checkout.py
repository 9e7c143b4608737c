"""benchmarks.compare_checkout runs (this checkout against itself, tiny size)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks import compare_checkout

ROOT = Path(__file__).resolve().parent.parent


def test_compare_checkout_against_itself(tmp_path) -> None:
    out = tmp_path / "c.json"
    assert compare_checkout.main(["--other", str(ROOT), "--model", "mlp", "--profile", "small",
                                  "--budget", "1.0", "--rounds", "1", "--steps", "1",
                                  "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert set(data["summary"]) == {"this", "other", "naive"}
    assert all(s["steady_median_s"] > 0 for s in data["summary"].values())
