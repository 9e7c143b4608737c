"""Transformer-LM harness (the sizes of the CS336 benchmark table, seed 001).

    python -m benchmarks.lm --model-size small --mode naive checkpoint tiny --device cpu \\
        --pass-type forward forward_backward --context-length 128 --warmup-steps 1 \\
        --measure-steps 3 --csv results/tmp/lm.csv --export results/tmp/lm.json

The model is the zoo's GPT2Decoder (pre-LayerNorm blocks, causal attention, 4x GELU MLP
with d_ff = 4 d_model, dropout 0.1), vocab 10,000. Each (size, mode) runs in its own
process. Out-of-memory (torch.OutOfMemoryError, "out of memory" RuntimeErrors,
MemoryError, or the child killed by the kernel) is reported as OOM; on CPU, sizes whose
weights + gradients would take more than half the available RAM are reported as SKIP
without running. ``forward`` times a training-mode forward (graph built, then dropped);
``forward_backward`` adds loss.backward() and zeroing the gradients. Each point (size,
mode, pass type) reports mean, sample std and CV% of the measured steps (after the
warm-up steps), the peak (CUDA: ``max_memory_allocated`` over the measured steps after
``reset_peak_memory_stats``, with ``baseline_bytes`` = ``memory_allocated`` before them;
CPU: RSS growth), and for ``tiny`` the plan's predicted activation peak. ``--budget auto``
gives tiny ``available_activation_bytes`` of the device after the model is built (the
``--memory-cap-gib`` cap included). Progress: one line per point on stderr (a tqdm bar
too when tqdm is installed). ``--csv`` (alias ``--output``) writes the rows,
``--export`` a JSON file with the rows, the arguments and the machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import Progress, parse_budget
from benchmarks.measure import RSSSampler, step_stats, time_steps

# d_ff is 4 * d_model in every row, which is what the zoo's TransformerBlock uses.
SIZES: dict[str, dict[str, int]] = {
    "small": dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12),
    "medium": dict(d_model=1024, d_ff=4096, num_layers=24, num_heads=16),
    "large": dict(d_model=1280, d_ff=5120, num_layers=36, num_heads=20),
    "xl": dict(d_model=1600, d_ff=6400, num_layers=48, num_heads=25),
    "2.7B": dict(d_model=2560, d_ff=10240, num_layers=32, num_heads=32),
}
VOCAB = 10_000
MODES = ("naive", "checkpoint", "tiny")
RAM_FRACTION = 0.5  # weights + grads must fit in this share of available RAM on CPU
CSV_FIELDS = ["model_size", "n_params", "mode", "pass_type", "device", "context_length",
              "batch_size", "status", "mean_s", "std_s", "cv_pct", "peak_bytes",
              "baseline_bytes", "predicted_peak_bytes", "budget_bytes", "measure_steps",
              "detail"]
PASS_TYPES = ("forward", "forward_backward")


def build_model(size: str, context_length: int, device: str | torch.device) -> torch.nn.Module:
    """The zoo decoder at one of SIZES (weights initialised on ``device``)."""
    from tiny_backprop.zoo import GPT2Decoder

    s = SIZES[size]
    assert s["d_ff"] == 4 * s["d_model"]
    with torch.device(device):
        return GPT2Decoder(VOCAB, context_length, s["d_model"], s["num_layers"], s["num_heads"])


def count_params(size: str, context_length: int) -> int:
    """Exact parameter count, without allocating weights (meta device)."""
    return sum(p.numel() for p in build_model(size, context_length, "meta").parameters())


def available_ram_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().available)


def skip_reason(size: str, context_length: int, device: str) -> str | None:
    """Why a CPU run would not fit comfortably (None if it would, or on CUDA)."""
    if device != "cpu":
        return None
    need = 8 * count_params(size, context_length)  # fp32 weights + fp32 grads, bytes
    have = available_ram_bytes()
    if need > RAM_FRACTION * have:
        return (f"weights+grads need {need / 2**30:.1f} GiB, more than {RAM_FRACTION:.0%} of "
                f"the {have / 2**30:.1f} GiB of RAM available")
    return None


def _apply_cap(device: torch.device, cap_gib: float | None) -> None:
    if cap_gib is None:
        return
    cap = int(cap_gib * 2**30)
    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap / total), device)
    else:  # approximate: RLIMIT_DATA counts private writable mappings, not RSS
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    """Measure one (size, mode) in this process; failures become a status, never a raise."""
    from benchmarks.modes import ModeUnavailable, apply_mode
    from benchmarks.worker import is_oom

    row: dict[str, Any] = {k: case[k] for k in ("model_size", "mode", "pass_type", "device",
                                                 "context_length", "batch_size")}
    row.update(status="ok", detail="")
    try:
        device = torch.device(case["device"])
        if case.get("threads"):
            torch.set_num_threads(int(case["threads"]))
        _apply_cap(device, case.get("memory_cap_gib"))
        torch.manual_seed(case["seed"])
        model = build_model(case["model_size"], case["context_length"], device)
        row["n_params"] = sum(p.numel() for p in model.parameters())
        budget = case["budget"]
        if case["mode"] == "tiny" and budget == "auto":
            from tiny_backprop.device_memory import available_activation_bytes
            from tiny_backprop.errors import BudgetError

            try:
                budget = available_activation_bytes(device, model=model)
            except BudgetError as exc:  # weights + grads alone do not fit: out of memory
                row.update(status="OOM", detail=f"budget='auto': {str(exc).splitlines()[0]}")
                return row
        if case["mode"] == "tiny":
            row["budget_bytes"] = budget if isinstance(budget, int) else None
        fn, _ = apply_mode(case["mode"], model, model_name="gpt2", budget=budget)
        shape = (case["batch_size"], case["context_length"])
        x = torch.randint(0, VOCAB, shape, device=device)
        y = torch.randint(0, VOCAB, shape, device=device)

        def step() -> None:
            loss = fn(x, y)
            if case["pass_type"] == "forward_backward":
                loss.backward()
                model.zero_grad(set_to_none=True)

        sync_dev = device if case.get("sync", True) else torch.device("cpu")
        time_steps(step, case["warmup_steps"], sync_dev)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            row["baseline_bytes"] = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            times = time_steps(step, case["measure_steps"], sync_dev)
            row["peak_bytes"] = torch.cuda.max_memory_allocated(device)
        else:
            with RSSSampler() as rss:
                times = time_steps(step, case["measure_steps"], sync_dev)
            row["peak_bytes"] = rss.peak_growth_bytes
        stats_fn = getattr(fn, "last_step_stats", None)
        if stats_fn is not None:
            row["predicted_peak_bytes"] = stats_fn().predicted_peak_bytes
        row["measure_steps"] = len(times)
        st = step_stats(times)
        row.update(mean_s=st["step_time_mean_s"], std_s=st["step_time_std_s"],
                   cv_pct=st["step_time_cv_pct"])
    except ModeUnavailable as exc:
        row.update(status="ERROR", detail=str(exc))
    except Exception as exc:  # noqa: BLE001 - OOM and friends become rows
        row.update(status="OOM" if is_oom(exc) else "ERROR", detail=f"{type(exc).__name__}: {exc}")
    return row


def _run_child(case: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    from benchmarks.runner import REPO_ROOT, worker_env

    with tempfile.TemporaryDirectory(prefix="tb-lm-") as tmp:
        out = Path(tmp) / "row.json"
        cmd = [sys.executable, "-m", "benchmarks.lm", "--_case", json.dumps(case), "--_out", str(out)]
        try:
            proc = subprocess.run(cmd, env=worker_env(case["device"]), cwd=str(REPO_ROOT),
                                  capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return {**case, "status": "ERROR", "detail": f"timed out after {timeout_s:.0f} s"}
        if out.exists():
            return json.loads(out.read_text(encoding="utf-8"))
        killed = proc.returncode in (-9, 137)
        tail = " ".join(proc.stderr.strip().splitlines()[-2:])
        return {**case, "status": "OOM" if killed else "ERROR",
                "detail": f"child exited with code {proc.returncode}. {tail}".strip()}


def format_rows(rows: list[dict[str, Any]]) -> str:
    head = f"{'size':<7}{'params':>10}  {'mode':<11}{'pass':<17}{'mean ms':>10}{'std ms':>9}" \
           f"{'CV%':>7}{'peak MiB':>10}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        def f(key: str, scale: float, fmt: str, r: dict[str, Any] = r) -> str:
            v = r.get(key)
            return "-" if v is None else format(v * scale, fmt)
        np_ = r.get("n_params")
        lines.append(
            f"{r['model_size']:<7}{(f'{np_ / 1e6:.1f}M' if np_ else '-'):>10}  {r['mode']:<11}"
            f"{r['pass_type']:<17}{f('mean_s', 1e3, '.2f'):>10}{f('std_s', 1e3, '.2f'):>9}"
            f"{f('cv_pct', 1, '.2f'):>7}{f('peak_bytes', 1 / 2**20, '.1f'):>10}  {r['status']}"
            + (f" ({r['detail'][:100]})" if r.get("detail") else ""))
    return "\n".join(lines)


def _budget_flag(text: str) -> int | float | str:
    return "auto" if text.strip().lower() == "auto" else parse_budget(text)


def machine_info(device: str) -> dict[str, Any]:
    """What the numbers were measured on: host, CPU, torch, the GPU's name and memory."""
    import datetime
    import os

    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(), "device": device,
    }
    if device == "cuda" and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu_name=props.name, gpu_memory_bytes=int(props.total_memory),
                    cuda=torch.version.cuda)
    return info


def write_csv(rows: list[dict[str, Any]], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)


def write_json(rows: list[dict[str, Any]], path: str | Path, args: dict[str, Any]) -> None:
    doc = {"benchmark": "lm", "machine": machine_info(args["device"]), "args": args,
           "sizes": SIZES, "vocab": VOCAB,
           "rows": [{k: r.get(k) for k in CSV_FIELDS} for r in rows]}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lm", description=__doc__.splitlines()[0])
    ap.add_argument("--model-size", nargs="+", choices=list(SIZES), default=["small"])
    ap.add_argument("--context-length", type=int, default=512)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--measure-steps", type=int, default=10)
    ap.add_argument("--pass-type", nargs="+", choices=PASS_TYPES, default=["forward_backward"],
                    help="one or both of forward, forward_backward")
    ap.add_argument("--mode", nargs="+", choices=MODES, default=["naive"])
    ap.add_argument("--budget", type=_budget_flag, default=0.5,
                    help="tiny's budget (see benchmarks.gpt2), or 'auto': what fits on the device")
    ap.add_argument("--device", choices=("cpu", "cuda"),
                    default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-sync", action="store_true", help="do not call torch.cuda.synchronize()")
    ap.add_argument("--memory-cap-gib", type=float, default=None,
                    help="CUDA: set_per_process_memory_fraction; CPU: RLIMIT_DATA (approximate)")
    ap.add_argument("--csv", "--output", dest="output", metavar="CSV", help="write rows here")
    ap.add_argument("--export", metavar="JSON", help="write rows, arguments and machine here")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads per point (default: torch's own choice)")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per point")
    ap.add_argument("--_case", help=argparse.SUPPRESS)
    ap.add_argument("--_out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args._case:  # child process
        row = run_case(json.loads(args._case))
        Path(args._out).write_text(json.dumps(row), encoding="utf-8")
        return 0
    for name in ("context_length", "batch_size", "measure_steps"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup_steps < 0:
        ap.error("--warmup-steps must be >= 0")
    if args.memory_cap_gib is not None and args.memory_cap_gib <= 0:
        ap.error("--memory-cap-gib must be > 0")
    if args.threads is not None and args.threads < 1:
        ap.error("--threads must be >= 1")
    if args.timeout <= 0:
        ap.error("--timeout must be > 0")
    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available to torch here")
    if args.seed is None:
        from benchmarks.common import default_seed

        args.seed = default_seed()
    rows = []
    cases = [(s, m, p) for s in args.model_size for m in args.mode
             for p in dict.fromkeys(args.pass_type)]
    progress = Progress(len(cases))
    for size, mode, pass_type in cases:
        label = f"{size} {mode} {pass_type}"
        case = dict(model_size=size, mode=mode, pass_type=pass_type, device=args.device,
                    context_length=args.context_length, batch_size=args.batch_size,
                    warmup_steps=args.warmup_steps, measure_steps=args.measure_steps,
                    budget=args.budget, seed=args.seed, sync=not args.no_sync,
                    memory_cap_gib=args.memory_cap_gib, threads=args.threads)
        progress.start(label)
        reason = skip_reason(size, args.context_length, args.device)
        if reason:
            row = {**case, "status": "SKIP", "detail": reason,
                   "n_params": count_params(size, args.context_length)}
        else:
            row = _run_child(case, args.timeout)
        rows.append(row)
        mean = row.get("mean_s")
        progress.finish(label, row["status"] + ("" if mean is None else f", {mean * 1e3:.1f} ms"))
    progress.close()
    print(format_rows(rows))
    if args.output:
        write_csv(rows, args.output)
    if args.export:
        write_json(rows, args.export, {k: v for k, v in vars(args).items()
                                       if not k.startswith("_")})
    return 0 if all(r["status"] in ("ok", "SKIP", "OOM") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
