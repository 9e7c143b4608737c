"""The analysis CLI's formatting, on a hand-made GraphAnalysis / StageChain."""

from __future__ import annotations

import json

import pytest

from tiny_backprop import analyze
from tiny_backprop.chain import GraphAnalysis, StageChain
from tiny_backprop.ir import GraphIR, NodeInfo

MIB = 1024 * 1024


def _ir() -> GraphIR:
    nodes = [NodeInfo("x", "placeholder", "x", (), 4 * MIB, 0, 0.0, 16)]
    for i in range(1, 6):
        nodes.append(NodeInfo(f"mm{i}", "call_function", "aten.mm.default", (i - 1,),
                              2 * MIB, 0, 1e9, 0, f"layers.{i}"))
    nodes.append(NodeInfo("output", "output", "output", (5,), 0, 0, 0.0, 0))
    return GraphIR(nodes, method="export")


def _fakes():
    analysis = GraphAnalysis(topo_order=list(range(7)),
                             frontier_bytes=[4 * MIB, 6 * MIB, 8 * MIB, 8 * MIB, 6 * MIB, 2 * MIB, 0],
                             store_all_peak=14 * MIB, lower_bound=6 * MIB)
    chain = StageChain(bounds=[(0, 3), (3, 7)], forward_cost=[2e9, 3e9],
                       backward_cost=[4e9, 6e9], input_bytes=[4 * MIB, 2 * MIB],
                       saved_bytes=[6 * MIB, 5 * MIB], topo_order=list(range(7)),
                       never_recompute=[False, False])
    return analysis, chain


def test_bucket_max_and_sparkline():
    assert analyze.bucket_max([1, 5, 2, 8], 2) == [5, 8]
    assert analyze.bucket_max([3], 10) == [3]
    assert analyze.bucket_max([], 10) == []
    line = analyze.sparkline([0, 4, 8], width=3)
    assert len(line) == 3 and line[-1] == "█" and line[0] == " "


def test_report_table_and_json():
    analysis, chain = _fakes()
    data = analyze.report_data({"model": "toy", "profile": "small", "method": "export"},
                               _ir(), analysis, chain)
    text = analyze.format_report(data, analysis.frontier_bytes)
    assert "toy (small): captured by export, 7 nodes, 2 stages" in text
    rows = [ln for ln in text.splitlines() if ln.strip().startswith(("0 ", "1 "))]
    assert len(rows) == 2
    assert "2.000" in rows[0] and "4.00" in rows[0] and "6.00" in rows[0]
    assert "layers.2:mm" in rows[0] and "x" in rows[0]
    assert "3.000" in rows[1] and "5.00" in rows[1]
    assert "store-all peak: 14.00 MiB" in text and "lower bound:    6.00 MiB" in text
    assert "peak 8.00 MiB" in text
    assert json.loads(json.dumps(data))["stages"][1]["saved_bytes"] == 5 * MIB


def test_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        analyze.parse_args(["--model", "nope"])
    with pytest.raises(SystemExit):
        analyze.parse_args(["--max-stages", "0"])
    assert "--max-stages must be at least 1" in capsys.readouterr().err


def test_cli_runs_end_to_end_with_analysis_stubbed(monkeypatch, capsys):
    from tiny_backprop import chain

    analysis, stage = _fakes()
    monkeypatch.setattr(chain, "analyze_graph", lambda ir: analysis)
    monkeypatch.setattr(chain, "stage_chain", lambda ir, max_stages=None: stage)
    assert analyze.main(["--model", "mlp", "--profile", "small", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"] == "mlp" and data["method"] in ("symbolic_trace", "export")
    assert data["nodes"] > 10 and len(data["stages"]) == 2
