"""benchmarks.lm: both pass types, CSV and JSON export, progress lines (children faked)."""

from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from benchmarks import common, lm


def _fake_child(case, timeout_s):
    ms = {"forward": 0.1, "forward_backward": 0.3}[case["pass_type"]]
    return {**case, "status": "ok", "detail": "", "n_params": 123, "mean_s": ms, "std_s": 0.01,
            "cv_pct": 10.0, "peak_bytes": 2**20, "measure_steps": case["measure_steps"],
            "predicted_peak_bytes": 2**19 if case["mode"] == "tiny" else None}


def test_both_pass_types_csv_and_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(lm, "_run_child", _fake_child)
    monkeypatch.setattr(lm, "skip_reason", lambda *a: None)
    out_csv, out_json = tmp_path / "lm.csv", tmp_path / "lm.json"
    rc = lm.main(["--model-size", "small", "--mode", "naive", "tiny", "--device", "cpu",
                  "--pass-type", "forward", "forward_backward", "--measure-steps", "4",
                  "--csv", str(out_csv), "--export", str(out_json), "--seed", "0"])
    assert rc == 0
    with out_csv.open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["mode"], r["pass_type"]) for r in rows] == [
        ("naive", "forward"), ("naive", "forward_backward"),
        ("tiny", "forward"), ("tiny", "forward_backward")]
    assert rows[3]["predicted_peak_bytes"] == str(2**19) and rows[0]["predicted_peak_bytes"] == ""
    doc = json.loads(out_json.read_text())
    assert doc["benchmark"] == "lm" and doc["args"]["pass_type"] == ["forward", "forward_backward"]
    assert doc["machine"]["torch"] and doc["machine"]["device"] == "cpu"
    assert [r["mean_s"] for r in doc["rows"]] == [0.1, 0.3, 0.1, 0.3]
    assert doc["sizes"]["2.7B"]["d_model"] == 2560
    err = capsys.readouterr().err
    assert "[4/4] small tiny forward_backward: ok, 300.0 ms" in err


def test_output_flag_still_writes_csv(monkeypatch, tmp_path):
    monkeypatch.setattr(lm, "_run_child", _fake_child)
    monkeypatch.setattr(lm, "skip_reason", lambda *a: None)
    out = tmp_path / "old.csv"
    assert lm.main(["--model-size", "small", "--device", "cpu", "--output", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2  # header + forward_backward (the default)


def test_budget_auto_is_accepted_and_bad_flags_rejected():
    assert lm._budget_flag("auto") == "auto"
    assert lm._budget_flag("0.25") == 0.25
    with pytest.raises(SystemExit):
        lm.main(["--threads", "0", "--device", "cpu"])
    with pytest.raises(SystemExit):
        lm.main(["--pass-type", "backward", "--device", "cpu"])


def test_progress_plain_lines_one_per_point():
    buf = io.StringIO()
    p = common.Progress(2, buf, use_tqdm=False)
    for name in ("a", "b"):
        p.start(name)
        p.finish(name, "ok")
    p.close()
    lines = buf.getvalue().splitlines()
    assert [ln for ln in lines if ": ok" in ln][0].startswith("[1/2] a: ok (elapsed")
    assert sum(": ok" in ln for ln in lines) == 2


def test_progress_with_tqdm_writes_a_line_per_point():
    pytest.importorskip("tqdm")
    buf = io.StringIO()
    p = common.Progress(3, buf)
    assert p._bar is not None
    for name in ("a", "b", "c"):
        p.start(name)
        p.finish(name, "ok")
    assert p._bar is None  # closed after the last point
    text = buf.getvalue()
    for i, name in enumerate("abc", 1):
        assert f"[{i}/3] {name}: ok" in text


def _tiny_lm(size, context_length, device):
    from tiny_backprop.zoo import GPT2Decoder

    with torch.device(device):
        return GPT2Decoder(lm.VOCAB, context_length, 16, 2, 2)


def _case(**kw):
    case = dict(model_size="small", mode="tiny", pass_type="forward_backward", device="cpu",
                context_length=8, batch_size=1, warmup_steps=0, measure_steps=1,
                budget="auto", seed=0, sync=True, memory_cap_gib=None)
    case.update(kw)
    return case


def test_budget_auto_runs_tiny_at_the_available_bytes(monkeypatch):
    from tiny_backprop import device_memory

    monkeypatch.setattr(lm, "build_model", _tiny_lm)
    monkeypatch.setattr(device_memory, "available_activation_bytes", lambda dev, model: 10**9)
    row = lm.run_case(_case())
    assert row["status"] == "ok", row["detail"]
    assert row["budget_bytes"] == 10**9 and row["predicted_peak_bytes"] > 0


def test_budget_auto_that_does_not_fit_is_an_oom_row(monkeypatch):
    from tiny_backprop import BudgetError, device_memory

    def nothing_left(dev, model):
        raise BudgetError("no memory left for activations on cpu: 1 MiB missing.\nmore",
                          minimum_bytes=1, budget_bytes=-5)

    monkeypatch.setattr(lm, "build_model", _tiny_lm)
    monkeypatch.setattr(device_memory, "available_activation_bytes", nothing_left)
    row = lm.run_case(_case())
    assert row["status"] == "OOM" and row["detail"].endswith("1 MiB missing.")
