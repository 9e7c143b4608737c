"""Budget sweep: tiny-backprop's peak memory vs step time across budgets, beside baselines.

    python experiments/budget_sweep.py --models gpt2 unet --profile small --points 6
    python experiments/budget_sweep.py --dry-run   # list the runs, run nothing

For each model: tiny at ``--points`` budgets spaced geometrically from the smallest budget
the planner accepts (``BudgetError.minimum_bytes`` for a 1-byte budget) to the store-all
peak (fraction 1.0), plus naive, checkpoint and compile_budget points. Every point is one
worker process of the benchmark suite (same memory probes: RSS growth on CPU, CUDA
allocated peak on CUDA). Writes budget_sweep.csv and budget_sweep.png (peak memory, MiB, vs
mean step time, s). If the planner's minimum cannot be found, budgets fall back to the
fractions ``FALLBACK_FRACTIONS`` (recorded in the CSV's budget column).
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.common import Progress  # noqa: E402
from benchmarks.results import BenchmarkResult  # noqa: E402
from benchmarks.runner import run_worker  # noqa: E402

FALLBACK_FRACTIONS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
BASELINES = ("naive", "checkpoint", "compile_budget")


def tiny_budgets(model: str, profile: str, points: int, seed: int) -> list[int | float]:
    """Budgets (bytes) from the planner's minimum to store-all, or fallback fractions."""
    try:
        from tiny_backprop import BudgetError, HCModule, zoo

        wl = zoo.build(model, profile, seed=seed)
        try:  # HCModule plans in its first forward; 4096 B is the smallest int budget
            HCModule(wl.model, 4096)(*wl.args, **wl.kwargs)
            return list(FALLBACK_FRACTIONS)  # 4 KiB was accepted: nothing to learn
        except BudgetError as exc:
            lo = exc.minimum_bytes
        hc = HCModule(wl.model, 1.0)
        hc(*wl.args, **wl.kwargs)
        full = getattr(hc.plan, "predicted_peak_bytes", None)
    except Exception as exc:  # noqa: BLE001 - planner not there yet, or no plan attribute
        print(f"budget_sweep: planner minimum unavailable ({type(exc).__name__}: {exc}); "
              "using fallback fractions", file=sys.stderr)
        return list(FALLBACK_FRACTIONS)
    if not full or full <= lo or points < 2:
        return [lo] if not full else [lo, full]
    ratio = (full / lo) ** (1 / (points - 1))
    return sorted({int(lo * ratio**i) for i in range(points)})


def plan_runs(models: list[str], profile: str, points: int, seed: int, dry_run: bool,
              baselines: tuple[str, ...] = BASELINES) -> list[tuple[str, str, Any]]:
    runs: list[tuple[str, str, Any]] = []
    for m in models:
        runs += [(m, b, None) for b in baselines]
        budgets = list(FALLBACK_FRACTIONS) if dry_run else tiny_budgets(m, profile, points, seed)
        runs += [(m, "tiny", b) for b in budgets]
    return runs


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", choices=("gpt2", "unet", "transformer", "resnet", "mlp"),
                    default=["gpt2", "unet"])
    ap.add_argument("--profile", choices=("small", "medium", "large"), default="small")
    ap.add_argument("--points", type=int, default=6, help="tiny budgets per model")
    ap.add_argument("--baselines", nargs="*", choices=BASELINES, default=list(BASELINES))
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--compile-budget", type=float, default=0.5)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads per worker (1 keeps times steady on a shared machine)")
    ap.add_argument("--timeout", type=float, default=1800.0)
    ap.add_argument("--out-dir", default="results/experiments")
    ap.add_argument("--dry-run", action="store_true", help="print the runs and exit")
    args = ap.parse_args(argv)
    if args.points < 1 or args.steps < 1 or args.warmup < 0:
        ap.error("--points and --steps must be >= 1, --warmup >= 0")
    runs = plan_runs(args.models, args.profile, args.points, args.seed, args.dry_run,
                     tuple(args.baselines))
    if args.dry_run:
        for m, mode, b in runs:
            print(f"{m} {args.profile} {mode}" + ("" if b is None else f" budget={b}"))
        print(f"{len(runs)} runs (tiny budgets shown are the fallback fractions; the real "
              "sweep asks the planner for its minimum)")
        return 0
    rows = []
    progress = Progress(len(runs))  # one line per point (and a tqdm bar when installed)
    for m, mode, b in runs:
        label = f"{m} {mode}" + ("" if b is None else f" budget={b}")
        progress.start(label)
        spec = {"benchmark": f"budget_sweep_{m}", "mode": mode, "trial": 0, "variant": "",
                "workload": {"source": "zoo", "model": m, "profile": args.profile},
                "device": args.device, "seed": args.seed, "warmup": args.warmup,
                "steps": args.steps, "budget": 0.5 if b is None else b,
                "compile_budget": args.compile_budget, "threads": args.threads}
        r = run_worker(spec, args.timeout)
        rows.append(_row(m, mode, b, r))
        progress.finish(label, r.status)
    progress.close()
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "budget_sweep.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot(rows, out / "budget_sweep.png")
    print(f"wrote {out / 'budget_sweep.csv'} and {out / 'budget_sweep.png'}")
    return 0


def _row(model: str, mode: str, budget: Any, r: BenchmarkResult) -> dict[str, Any]:
    return {"model": model, "mode": mode, "budget": budget, "status": r.status,
            "peak_bytes": r.peak_bytes(), "step_time_s": r.wall_time_s,
            "predicted_peak_bytes": r.predicted_peak_bytes,
            "grads_match_naive": r.extra_metrics.get("grads_match_naive"), "error": r.error}


def _plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    markers = {"naive": "s", "checkpoint": "^", "compile_budget": "D"}
    for ax, m in zip(axes[0], models):
        ok = [r for r in rows if r["model"] == m and r["status"] == "ok"]
        tiny = sorted((r for r in ok if r["mode"] == "tiny"), key=lambda r: float(r["budget"]))
        if tiny:  # connected in budget order, each point labelled with its budget
            ax.plot([r["step_time_s"] for r in tiny], [r["peak_bytes"] / 2**20 for r in tiny],
                    "o-", label="tiny (budget order)")
            for r in tiny:
                b = float(r["budget"])
                ax.annotate(f"{b:g}" if b <= 1 else f"{b / 2**20:.2g} MiB",
                            (r["step_time_s"], r["peak_bytes"] / 2**20), fontsize=7,
                            textcoords="offset points", xytext=(4, 4))
        for r in ok:
            if r["mode"] in markers:
                label = r["mode"] + ("" if r["grads_match_naive"] else " (grads wrong)")
                ax.plot(r["step_time_s"], r["peak_bytes"] / 2**20, markers[r["mode"]], label=label)
        ax.set_xlabel("mean step time (s)")
        ax.set_ylabel("peak memory (MiB)")
        ax.set_title(m)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
