"""Budget parsing and planning a captured graph through stage_chain."""

from __future__ import annotations

import pytest

import tiny_backprop as tb
from tiny_backprop import chain as chain_mod
from tiny_backprop.chain import StageChain
from tiny_backprop.errors import BudgetError
from tiny_backprop.plan import parse_budget
from tiny_backprop.plan import plan as plan_graph


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2GiB", 2 * 2**30),
        ("512MB", 512 * 10**6),
        ("1.5 GB", 1_500_000_000),
        ("100kB", 100_000),
        ("123", 123),
        (" 4 kib ", 4096),
        ("1e3", 1000),
        ("3MiB", 3 * 2**20),
        ("0.5KiB", 512),
        ("7b", 7),
    ],
)
def test_parse_budget_strings(text: str, expected: int) -> None:
    assert parse_budget(text, 1000) == expected


def test_parse_budget_numbers() -> None:
    assert parse_budget(4096, 10) == 4096
    assert parse_budget(0.5, 1000) == 500
    assert parse_budget(1.0, 1000) == 1000
    for bad in (0.0, -0.1, 1.01, float("inf")):
        with pytest.raises(ValueError):
            parse_budget(bad, 1000)
    for bad in ("", "12 parsecs", "-5MB", "1..2GB", "GB"):
        with pytest.raises(ValueError):
            parse_budget(bad, 1000)
    for bad in (True, None, [1], b"1GB"):
        with pytest.raises(TypeError):
            parse_budget(bad, 1000)  # type: ignore[arg-type]


def _hand_chain() -> StageChain:
    sc = StageChain(
        bounds=[(0, 1), (1, 2), (2, 3), (3, 4)],
        forward_cost=[1.0, 1.0, 1.0, 1.0],
        backward_cost=[2.0, 2.0, 2.0, 2.0],
        input_bytes=[10, 10, 10, 10],
        saved_bytes=[10, 10, 10, 10],
        topo_order=[0, 1, 2, 3],
        never_recompute=[False, False, True, False],
    )
    return sc


def test_plan_graph_via_stage_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def fake_stage_chain(ir, max_stages=None):
        seen["args"] = (ir, max_stages)
        return _hand_chain()

    monkeypatch.setattr(chain_mod, "stage_chain", fake_stage_chain)
    p = plan_graph("IR", 0.7, max_stages=7)
    assert seen["args"] == ("IR", 7)
    assert p.chain is not None and len(p.chain) == 4
    assert p.budget_bytes == 56 and p.peak_bytes <= 56
    # stage 2 must be kept: it is never inside a region
    stack = list(p.tree)
    while stack:
        n = stack.pop()
        if isinstance(n, tb.Region):
            assert not (n.start <= 2 < n.end)
            stack.extend(n.children)
    with pytest.raises(BudgetError) as ei:
        plan_graph("IR", 20)
    assert ei.value.minimum_bytes > 20
    base = plan_graph("IR", "1KiB", planner="per_stage")
    assert base.chain is not None and base.planner == "per_stage"
