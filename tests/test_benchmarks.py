"""Benchmark CLIs: end-to-end run, summary, lm OOM/SKIP rows, run_full_test exit codes.

Timings are never asserted (shared machines); structure, statuses and exactness are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import lm
from benchmarks.common import parse_budget
from benchmarks.results import BenchmarkResult, load_results
from benchmarks.runner import Variant, run_benchmark
from benchmarks.summarize import format_table, summarize_results
from benchmarks.summarize import main as summarize_main
from benchmarks.utils import format_summary_table, summarize

ROOT = Path(__file__).resolve().parent.parent
FIELDS = ("benchmark", "mode", "trial", "wall_time_s", "peak_mem_bytes", "peak_mem_reserved_bytes",
          "peak_cpu_bytes", "gpu_utilization_pct", "loss_value", "extra_metrics")


def _args(tmp_path: Path, modes: list[str]) -> argparse.Namespace:
    return argparse.Namespace(
        modes=modes, profile="small", trials=1, budget=0.5, compile_budget=0.5, warmup=0,
        steps=1, device="cpu", export=str(tmp_path / "r.json"), csv=str(tmp_path / "r.csv"),
        seed=0, threads=1, timeout=300.0, no_summary=True)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    args = _args(tmp, ["naive", "checkpoint", "tiny"])
    variant = Variant({"source": "zoo", "model": "mlp", "profile": "small",
                       "overrides": {"n_layers": 3}})
    results = run_benchmark("mlp", [variant], args, argv=["--test"])
    return tmp, results


def test_end_to_end_run_produces_all_fields(mlp_run):
    tmp, results = mlp_run
    meta, loaded = load_results(tmp / "r.json")
    assert [r.mode for r in loaded] == ["naive", "checkpoint", "tiny"]
    for key in ("cpu_model", "cpu_cores_logical", "torch", "date_utc", "command", "gpu_name"):
        assert key in meta
    raw = json.loads((tmp / "r.json").read_text())["results"]
    for entry in raw:
        assert set(FIELDS) <= set(entry)
    for r in loaded[:2]:
        assert r.status == "ok", r.error
        assert r.wall_time_s > 0 and r.peak_cpu_bytes >= 0 and r.peak_mem_bytes is None
        assert len(r.extra_metrics["step_times_s"]) == 1
        assert r.extra_metrics["grads_match_naive"] is True
        # eager checkpointing is exact: same seeded loss and bit-identical gradients
        assert r.extra_metrics["grads_bitwise_equal"] is True
        assert r.held_activation_bytes > 0
    assert loaded[0].loss_value == loaded[1].loss_value
    assert loaded[1].extra_metrics["checkpointed_blocks"] == 3
    # checkpoint hides its saved tensors from the outer hooks: it must report fewer bytes
    assert loaded[1].held_activation_bytes < loaded[0].held_activation_bytes
    tiny = loaded[2]
    if tiny.status != "ok":  # HCModule not merged yet: an error row, not a crash
        assert tiny.status == "error" and tiny.error
    csv_text = (tmp / "r.csv").read_text()
    assert csv_text.splitlines()[0].startswith("benchmark,profile,variant,mode")
    assert len(csv_text.splitlines()) == 4


def test_summarize_table_and_guide_api(mlp_run, capsys):
    tmp, results = mlp_run
    rows = summarize_results(results)
    naive = next(r for r in rows if r["mode"] == "naive")
    ckpt = next(r for r in rows if r["mode"] == "checkpoint")
    assert naive["time_ratio_vs_naive"] == pytest.approx(1.0)
    assert ckpt["mem_ratio_vs_naive"] == pytest.approx(
        ckpt["peak_mem_mean_bytes"] / naive["peak_mem_mean_bytes"])
    table = format_summary_table(summarize(results))
    assert "checkpoint" in table and "mem_x" in table
    assert summarize_main([str(tmp / "r.json")]) == 0
    out = capsys.readouterr().out
    assert "naive" in out and "time_x" in out
    assert summarize_main([str(tmp / "missing.json")]) == 2


def test_summary_groups_ratios_and_failures():
    def r(mode, t, mem, trial=0, status="ok"):
        return BenchmarkResult("b", mode, trial, wall_time_s=t, peak_cpu_bytes=mem,
                               profile="small", status=status,
                               error=None if status == "ok" else "boom")
    rows = summarize_results([r("naive", 1.0, 100), r("naive", 3.0, 300, 1),
                              r("checkpoint", 4.0, 50), r("tiny", None, None, status="error")])
    by = {x["mode"]: x for x in rows}
    assert by["naive"]["wall_time_mean_s"] == 2.0 and by["naive"]["trials"] == 2
    assert by["naive"]["wall_time_std_s"] == pytest.approx(2 ** 0.5)
    assert by["checkpoint"]["time_ratio_vs_naive"] == 2.0
    assert by["checkpoint"]["mem_ratio_vs_naive"] == 0.25
    assert by["checkpoint"]["mem_saving_pct"] == 75.0
    assert by["tiny"]["trials"] == 0 and by["tiny"]["failed"] == 1
    assert "ERROR" in format_table(rows) and "boom" in format_table(rows)


def test_budget_flag_parsing():
    assert parse_budget("0.5") == 0.5
    assert parse_budget("1000") == 1000
    assert parse_budget("512MB") == "512MB"
    for bad in ("1.5", "-3", "lots", "5XB"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_budget(bad)


def test_lm_oom_is_a_row_not_a_crash(monkeypatch):
    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")
    monkeypatch.setattr(lm, "build_model", boom)
    case = dict(model_size="small", mode="naive", pass_type="forward_backward", device="cpu",
                context_length=8, batch_size=1, warmup_steps=0, measure_steps=1, budget=0.5,
                seed=0, sync=True, memory_cap_gib=None)
    row = lm.run_case(case)
    assert row["status"] == "OOM" and "out of memory" in row["detail"]
    monkeypatch.setattr(lm, "build_model", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    assert lm.run_case(case)["status"] == "OOM"
    monkeypatch.setattr(lm, "build_model",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("shape mismatch")))
    assert lm.run_case(case)["status"] == "ERROR"


def test_lm_skips_sizes_that_do_not_fit(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(lm, "available_ram_bytes", lambda: 2**30)  # 1 GiB
    out = tmp_path / "lm.csv"
    rc = lm.main(["--model-size", "xl", "2.7B", "--device", "cpu", "--output", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.count("SKIP") == 2
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(",SKIP," in ln for ln in lines[1:])


def test_lm_param_counts_follow_the_size_table():
    # 12 layers of d=768 plus embeddings and head: the small row of seed 001's table
    n = lm.count_params("small", 512)
    assert 12 * 12 * 768**2 < n < 12 * 12 * 768**2 + 3 * 10_000 * 768


def test_run_full_test_fails_on_a_failing_step(tmp_path):
    cmd = [str(ROOT / "run_full_test"), "--skip-lint", "--skip-tests", "--targets", "gpt2",
           "--benchmark-args", "--steps 0", "--output-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL  step bench:gpt2" in proc.stdout
    summary = json.loads(next(tmp_path.glob("verification_summary_*.json")).read_text())
    assert summary["ok"] is False
    assert [s["step"] for s in summary["steps"]] == ["import", "bench:gpt2"]
    assert summary["steps"][0]["ok"] is True


def test_run_full_test_rejects_unknown_target():
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "run_full_test.py"),
                           "--targets", "bogus"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "bogus" in proc.stderr


def test_thresholds_fail_when_tiny_misses_or_errors():
    sys.path.insert(0, str(ROOT / "scripts"))
    from run_full_test import check_thresholds

    rows = summarize_results([
        BenchmarkResult("g", "naive", 0, wall_time_s=1.0, peak_cpu_bytes=100, profile="small"),
        BenchmarkResult("g", "tiny", 0, wall_time_s=2.0, peak_cpu_bytes=40, profile="small"),
    ])
    checks = check_thresholds(rows, memory_threshold=0.5, time_threshold=1.5)
    assert [c["ok"] for c in checks] == [True, False]
    err = summarize_results([BenchmarkResult("g", "tiny", 0, status="error", error="x")])
    assert check_thresholds(err, 1.0, 1.5)[0]["ok"] is False


def test_experiments_dry_runs(tmp_path):
    sweep = subprocess.run([sys.executable, str(ROOT / "experiments" / "budget_sweep.py"),
                            "--dry-run"], capture_output=True, text=True, timeout=60)
    assert sweep.returncode == 0, sweep.stderr
    assert "gpt2 small naive" in sweep.stdout and "unet small tiny budget=" in sweep.stdout
    pt = subprocess.run([sys.executable, str(ROOT / "experiments" / "plan_time.py"), "--dry-run",
                         "--sizes", "50", "200", "--repeats", "1", "--out-dir", str(tmp_path)],
                        capture_output=True, text=True, timeout=60)
    assert pt.returncode == 0, pt.stderr
    rows = (tmp_path / "plan_time.csv").read_text().splitlines()
    assert rows[0].startswith("nodes,stages") and len(rows) == 3
    assert (tmp_path / "plan_time.png").stat().st_size > 0


def test_pareto_markdown_compares_each_peer_with_tiny_at_no_more_memory():
    from experiments.pareto import markdown, summarize

    def row(mode, mem, t, r=0):
        return {"workload": "w", "mode": mode, "mem_bytes": mem, "time_s": t,
                "time_std_s": 0.0, "first_step_mem_bytes": mem, "round": r}

    rows = [row("naive", 100, 1.0), row("checkpoint", 20, 1.3), row("sac", 60, 1.1),
            row("tiny@0.5", 50, 1.15), row("tiny@0.2", 21, 1.2), row("tiny@0.7", 70, 1.05),
            {"workload": "w", "mode": "tiny@0.1", "error": "BudgetError: ..."}]
    text = markdown(summarize(rows))
    assert "| checkpoint | 0.200 | 1.300 | none | | | no |" in text  # tiny@0.2 holds more
    assert "| sac | 0.600 | 1.100 | tiny@0.5 | 0.500 | 1.150 | no |" in text
    assert "| tiny@0.7 | 0.700 | 1.050 |" in text
    assert "No result (below the planner's minimum or failed): tiny@0.1." in text


def test_pareto_merge_times_uses_the_interleaved_steps():
    from experiments.pareto import merge_times, summarize

    rows = [{"workload": "w", "mode": m, "mem_bytes": 10, "time_s": 9.0, "time_std_s": 0.0,
             "first_step_mem_bytes": 10, "round": 0} for m in ("naive", "tiny@0.5", "sac")]
    summary = summarize(rows)
    merge_times(summary, {"w": {"naive": [1.0, 1.2, 1.1], "tiny@0.5": [1.4, 1.2, 1.3],
                                "sac": {"error": "boom"}}})
    by = {r["mode"]: r for r in summary}
    assert by["naive"]["time_s"] == 1.1 and by["tiny@0.5"]["time_s"] == 1.3
    assert abs(by["tiny@0.5"]["time_x_naive"] - 1.3 / 1.1) < 1e-12
    assert by["tiny@0.5"]["time_min_s"] == 1.2 and by["tiny@0.5"]["time_steps"] == 3
    assert "boom" in by["sac"]["time_note"] and by["sac"]["time_s"] == 9.0


def test_slots_check_plans_each_budget_at_each_slots_and_the_default(tmp_path, capsys):
    from experiments import slots_check

    out = tmp_path / "slots.txt"
    assert slots_check.main(["--workload", "mlp_small", "--budgets", "0.5", "1.0",
                             "--slots", "4", "512", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# python -m experiments.slots_check --workload mlp_small")
    rows = [ln.split() for ln in lines[2:-1]]
    assert [(r[0], r[1]) for r in rows] == [
        ("0.5", "4"), ("0.5", "512"), ("0.5", "8192*"),
        ("1.0", "4"), ("1.0", "512"), ("1.0", "8192*")]
    assert all(float(r[3]) >= 0 for r in rows)
    assert float(rows[3][3]) == 0.0  # store-all: nothing recomputed
