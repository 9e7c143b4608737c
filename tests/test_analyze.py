"""The analysis CLI: formatting helpers and an end-to-end run on a zoo model."""

from __future__ import annotations

import json

import pytest

from tiny_backprop import analyze


def test_bucket_max_and_sparkline():
    assert analyze.bucket_max([1, 5, 2, 8], 2) == [5, 8]
    assert analyze.bucket_max([3], 10) == [3]
    assert analyze.bucket_max([], 10) == []
    line = analyze.sparkline([0, 4, 8], width=3)
    assert len(line) == 3 and line[-1] == "█" and line[0] == " "


def test_cli_rejects_bad_arguments():
    with pytest.raises(SystemExit):
        analyze.parse_args(["--model", "nope"])


def test_cli_end_to_end_json_and_table(capsys):
    assert analyze.main(["--model", "gpt2", "--profile", "small", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["trace_method"] == "fake" and data["container"] == "blocks"
    assert len(data["stages"]) == 2 + 4  # pre, 4 blocks, post
    assert data["stages"][1]["call"] == "blocks.0"
    assert all(s["saved_bytes"] >= 0 and s["input_bytes"] >= 0 for s in data["stages"])
    peaks = [p["predicted_peak_bytes"] for p in data["plans"] if "error" not in p]
    assert peaks == sorted(peaks, reverse=True) and len(peaks) >= 2
    assert analyze.main(["--model", "gpt2", "--profile", "small"]) == 0
    text = capsys.readouterr().out
    assert "traced on fake tensors" in text and "blocks.3" in text and "budget 0.5" in text


def test_cli_timeline_png(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "t.png"
    assert analyze.main(["--model", "mlp", "--profile", "small", "--timeline", str(png),
                         "--budget", "1.0"]) == 0
    assert png.stat().st_size > 1000
    assert "timeline:" in capsys.readouterr().err
