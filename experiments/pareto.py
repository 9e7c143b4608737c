"""Memory vs step time of tiny-backprop at many budgets beside every eager peer.

    python -m experiments.pareto --workloads gpt2_medium hf_gpt2 --rounds 2 --out results/pareto
    python -m experiments.pareto --dry-run
    python -m experiments.pareto --markdown results/pareto_lm.json   # tables for docs/

Memory: each point (workload x mode) runs in its own process (``python -m
experiments.pareto --worker ...``, one torch thread, MALLOC_MMAP_THRESHOLD_=65536);
rounds are interleaved (every point once per round, in a shuffled order); memory = the
median over rounds of the peak RSS growth of a steady step over the RSS before it (the
kernel's VmHWM, reset before each step: no sampler). Time (``--timing interleaved``, the
default): then one process per workload with glibc's default allocator builds every
mode's model and times them interleaved, one step of each per round in a shuffled
order (median, range and CV over the steps), so the modes share the process's noise;
``--timing process``: a second process per point; ``--timing threshold``: the memory
process's own times. Modes: naive, checkpoint (torch.utils.checkpoint per block,
non-reentrant), checkpoint_seq (sqrt(L) segments; chain models only), sac (selective
activation checkpointing per block, saving matmul outputs), hf (Hugging Face
gradient_checkpointing_enable; HF models only), tiny@<fraction> (HCModule, its default
measured costs), tinyf@<fraction> (FLOP costs). Writes
<out>.csv and <out>.png; prints a table with memory and time as multiples of naive.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUDGETS = (1.0, 0.7, 0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1)
WORKLOADS = ("gpt2_medium", "hf_gpt2", "hf_llama", "unet_medium", "resnet_medium")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        return int(re.search(rf"{field}:\s+(\d+)", f.read()).group(1)) * 1024


def build(workload: str) -> tuple[Any, Any, str]:
    """(model, make_loss(model) -> scalar, block container attribute path)."""
    import torch

    from tiny_backprop import zoo

    if workload.startswith("hf_"):
        import transformers
        torch.manual_seed(0)
        ids = torch.randint(0, 4000, (4, 256), generator=torch.Generator().manual_seed(1))
        if workload == "hf_gpt2":
            m = transformers.GPT2LMHeadModel(transformers.GPT2Config(
                n_layer=6, n_embd=256, n_head=4, vocab_size=4000, n_positions=256,
                attn_implementation="eager"))
            path = "transformer.h"
        else:
            m = transformers.LlamaForCausalLM(transformers.LlamaConfig(
                hidden_size=256, intermediate_size=688, num_hidden_layers=6,
                num_attention_heads=4, num_key_value_heads=4, vocab_size=4000,
                max_position_embeddings=256, attn_implementation="eager"))
            path = "model.layers"
        m.config.use_cache = False
        return m.train(), (lambda mod: mod(input_ids=ids, labels=ids).loss), path
    name, profile = workload.rsplit("_", 1)
    w = zoo.build(name, profile)
    return w.model.train(), (lambda mod: mod(*w.args, **w.kwargs)), "blocks"


def _get(model: Any, path: str) -> Any:
    for p in path.split("."):
        model = getattr(model, p)
    return model


def apply(model: Any, mode: str, path: str, workload: str) -> Any:
    """The module to call for `mode` (blocks wrapped in place where needed)."""
    import functools

    import torch
    from torch import nn
    from torch.utils.checkpoint import (
        CheckpointPolicy,
        checkpoint,
        checkpoint_sequential,
        create_selective_checkpoint_contexts,
    )

    if mode == "naive":
        return model
    if mode.startswith(("tiny@", "tinyf@")):
        from tiny_backprop import HCModule
        cost = "flops" if mode.startswith("tinyf@") else "measured"
        return HCModule(model, float(mode.split("@")[1]), cost_model=cost)
    if mode == "hf":
        if not workload.startswith("hf_"):
            raise SystemExit(3)
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model
    blocks = _get(model, path)
    mm = {torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}

    def policy(ctx, op, *a, **k):
        return CheckpointPolicy.MUST_SAVE if op in mm else CheckpointPolicy.PREFER_RECOMPUTE

    class Wrapped(nn.Module):
        def __init__(self, inner: nn.Module, sac: bool) -> None:
            super().__init__()
            self.inner, self.sac = inner, sac

        def forward(self, *a: Any, **k: Any) -> Any:
            extra = ({"context_fn": functools.partial(create_selective_checkpoint_contexts,
                                                      policy)} if self.sac else {})
            return checkpoint(self.inner, *a, use_reentrant=False, **extra, **k)

    if mode in ("checkpoint", "sac"):
        for i in range(len(blocks)):
            blocks[i] = Wrapped(blocks[i], mode == "sac")
        return model
    if mode == "checkpoint_seq":
        if workload not in ("gpt2_medium",):
            raise SystemExit(3)
        seg = max(1, round(len(blocks) ** 0.5))
        seq = nn.Sequential(*blocks)

        class Seq(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.chain = seq

            def forward(self, x: Any) -> Any:
                return checkpoint_sequential(self.chain, seg, x, use_reentrant=False)

        model.blocks = nn.ModuleList([Seq()])
        return model
    raise ValueError(f"unknown mode {mode!r}")


def worker(workload: str, mode: str, warmup: int, steps: int) -> dict[str, Any]:
    import torch
    torch.set_num_threads(1)
    model, loss_of, path = build(workload)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    fn = apply(model, mode, path, workload)
    times, mems, first_mem = [], [], None
    for i in range(warmup + steps):
        before = _status("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        t0 = time.perf_counter()
        loss_of(fn).backward()
        dt = time.perf_counter() - t0
        grow = _status("VmHWM") - before
        for p in model.parameters():
            p.grad.zero_()
        if i == 0:
            first_mem = grow
        if i >= warmup:
            times.append(dt)
            mems.append(grow)
    out = {"workload": workload, "mode": mode, "time_s": statistics.median(times),
           "time_std_s": statistics.pstdev(times), "mem_bytes": int(statistics.median(mems)),
           "first_step_mem_bytes": first_mem}
    plan = getattr(fn, "plan", None)
    if plan is not None:  # tiny: the planner's predicted peak (bytes, working included)
        out["predicted_bytes"] = int(plan.predicted_peak_bytes)
    return out


def time_worker(workload: str, modes: list[str], warmup: int, steps: int, seed: int
                ) -> dict[str, Any]:
    """Step times of every mode of one workload in this process, interleaved: each mode
    gets its own model (same seed) and `warmup` steps, then `steps` rounds run one step
    of every mode in a shuffled order. Returns {mode: [seconds] or {"error": ...}}."""
    import torch
    torch.set_num_threads(1)
    fns: dict[str, tuple[Any, Any, Any]] = {}
    out: dict[str, Any] = {}
    for mode in modes:
        model, loss_of, path = build(workload)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        try:
            fn = apply(model, mode, path, workload)
            for _ in range(warmup):
                loss_of(fn).backward()
        except SystemExit:
            continue  # the mode does not apply to this workload
        except Exception as exc:  # a budget below the minimum: no point
            out[mode] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
            continue
        fns[mode] = (model, loss_of, fn)
        out[mode] = []
    rng = random.Random(seed)
    order = list(fns)
    for _ in range(steps):
        rng.shuffle(order)
        for mode in order:
            model, loss_of, fn = fns[mode]
            t0 = time.perf_counter()
            loss_of(fn).backward()
            out[mode].append(time.perf_counter() - t0)
            for p in model.parameters():
                p.grad.zero_()
    return out


def merge_times(summary: list[dict[str, Any]], timings: dict[str, dict[str, Any]]) -> None:
    """Replace the summary's times by those of the interleaved timing runs (median,
    range and CV over the measured steps) and recompute time x naive."""
    for r in summary:
        ts = timings.get(r["workload"], {}).get(r["mode"])
        if "error" in r:
            continue
        if not isinstance(ts, list) or not ts:  # say where this point's time came from
            r["time_note"] = ("timing run failed: " + str((ts or {}).get("error", "no steps"))
                              + "; time from the memory process")
            continue
        r["time_s"] = statistics.median(ts)
        r["time_min_s"], r["time_max_s"] = min(ts), max(ts)
        r["time_cv_pct"] = 100 * statistics.pstdev(ts) / statistics.mean(ts)
        r["time_steps"] = len(ts)
    _ratios_to_naive(summary, ("time",))


def _run_timing(workload: str, modes: list[str], warmup: int, steps: int, seed: int
                ) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "experiments.pareto", "--time-worker",
                           workload, str(warmup), str(steps), str(seed), *modes], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {m: {"error": err} for m in modes}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _run_worker(workload: str, mode: str, warmup: int, steps: int, mmap: bool
                ) -> dict[str, Any] | None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if mmap:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-m", "experiments.pareto", "--worker", workload,
                           mode, str(warmup), str(steps)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1200)
    if proc.returncode == 3:
        return None  # the mode does not apply to this workload
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return {"workload": workload, "mode": mode, "error": err}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_point(workload: str, mode: str, warmup: int, steps: int, split: bool = True
              ) -> dict[str, Any] | None:
    """One point: memory from a process with MALLOC_MMAP_THRESHOLD_=65536 (freed blocks
    go back to the kernel, so RSS follows live memory); with `split`, time from a second
    process with glibc's default allocator (what a CPU user runs; with the threshold
    every large allocation is a fresh mapping and page faults inflate the step time of
    every mode, most of all those that allocate more). Without `split` both come from
    the first process."""
    mem = _run_worker(workload, mode, warmup, steps, mmap=True)
    if mem is None or "error" in mem or not split:
        return mem
    tim = _run_worker(workload, mode, warmup, steps, mmap=False)
    if tim is None or "error" in tim:
        return tim
    mem["time_mmap_s"] = mem["time_s"]
    mem["time_s"], mem["time_std_s"] = tim["time_s"], tim["time_std_s"]
    return mem


def modes_for(workload: str, budgets: list[float], flops: list[float]) -> list[str]:
    out = ["naive", "checkpoint", "sac"]
    if workload == "gpt2_medium":
        out.append("checkpoint_seq")
    if workload.startswith("hf_"):
        out.append("hf")
    return out + [f"tiny@{b}" for b in budgets] + [f"tinyf@{b}" for b in flops]


def _ratios_to_naive(summary: list[dict[str, Any]], what: tuple[str, ...]) -> None:
    """Set `<what>_x_naive` of every point without an error: its figure over naive's in
    the same workload ("mem": mem_bytes, "time": time_s)."""
    field = {"mem": "mem_bytes", "time": "time_s"}
    for wl in {r["workload"] for r in summary}:
        base = next((r for r in summary if r["workload"] == wl and r["mode"] == "naive"
                     and "error" not in r), None)
        for r in summary:
            if r["workload"] == wl and base and "error" not in r:
                for w in what:
                    r[f"{w}_x_naive"] = r[field[w]] / base[field[w]]


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over rounds per (workload, mode), with ratios to naive."""
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        keyed.setdefault((r["workload"], r["mode"]), []).append(r)
    out = []
    for (wl, mode), rs in keyed.items():
        ok = [r for r in rs if "error" not in r]
        if not ok:
            out.append({"workload": wl, "mode": mode, "error": rs[0]["error"]})
            continue
        out.append({"workload": wl, "mode": mode, "rounds": len(ok),
                    "time_s": statistics.median(r["time_s"] for r in ok),
                    "time_min_s": min(r["time_s"] for r in ok),
                    "time_max_s": max(r["time_s"] for r in ok),
                    "time_cv_pct": (100 * statistics.pstdev(r["time_s"] for r in ok)
                                    / statistics.mean(r["time_s"] for r in ok)),
                    "mem_bytes": int(statistics.median(r["mem_bytes"] for r in ok)),
                    "first_step_mem_bytes": int(statistics.median(
                        r["first_step_mem_bytes"] for r in ok))})
        if "predicted_bytes" in ok[0]:
            out[-1]["predicted_bytes"] = ok[0]["predicted_bytes"]
            out[-1]["mem_x_predicted"] = out[-1]["mem_bytes"] / max(1, ok[0]["predicted_bytes"])
    _ratios_to_naive(out, ("mem", "time"))
    return sorted(out, key=lambda r: (r["workload"], r.get("mem_x_naive", 9)))


def markdown(summary: list[dict[str, Any]]) -> str:
    """Per workload: a table of every point (memory and time as multiples of naive, the
    time range and CV over the timing run's steps, or over the rounds with per-process
    timing, the first step's memory, and for tiny the memory over its predicted peak),
    then each peer against tiny's fastest point at no more memory."""
    out: list[str] = []
    for wl in sorted({r["workload"] for r in summary}):
        rs = [r for r in summary if r["workload"] == wl]
        base = next((r for r in rs if r["mode"] == "naive" and "error" not in r), None)
        if base is None:
            continue
        out.append(f"**{wl}** (naive: {base['mem_bytes'] / 2**20:.1f} MiB, "
                   f"{base['time_s']:.3f} s)\n")
        out.append("| mode | memory × naive | time × naive | time range (s) | CV % "
                   "| first step memory × naive | memory / predicted |")
        out.append("|---|---|---|---|---|---|---|")
        bad = []
        for r in rs:
            if "error" in r:
                bad.append(r["mode"])
                continue
            out.append(f"| {r['mode']} | {r['mem_x_naive']:.3f} | {r['time_x_naive']:.3f} | "
                       f"{r['time_min_s']:.3f}-{r['time_max_s']:.3f} | "
                       f"{r.get('time_cv_pct', float('nan')):.1f} | "
                       f"{r['first_step_mem_bytes'] / base['mem_bytes']:.3f} | "
                       + (f"{r['mem_x_predicted']:.3f} |" if "mem_x_predicted" in r else " |"))
        if bad:
            out.append(f"\nNo result (below the planner's minimum or failed): {', '.join(bad)}.")
        out.append("\n| peer | memory × naive | time × naive | tiny at no more memory | "
                   "memory × naive | time × naive | tiny faster |")
        out.append("|---|---|---|---|---|---|---|")
        tiny = [r for r in rs if r["mode"].startswith("tiny") and "error" not in r]
        for peer in rs:
            if peer["mode"].startswith("tiny") or peer["mode"] == "naive" or "error" in peer:
                continue
            fit = [t for t in tiny if t["mem_bytes"] <= peer["mem_bytes"]]
            if not fit:
                out.append(f"| {peer['mode']} | {peer['mem_x_naive']:.3f} | "
                           f"{peer['time_x_naive']:.3f} | none | | | no |")
                continue
            t = min(fit, key=lambda r: r["time_s"])
            out.append(f"| {peer['mode']} | {peer['mem_x_naive']:.3f} | "
                       f"{peer['time_x_naive']:.3f} | {t['mode']} | {t['mem_x_naive']:.3f} | "
                       f"{t['time_x_naive']:.3f} | "
                       f"{'yes' if t['time_s'] <= peer['time_s'] else 'no'} |")
        out.append("")
    return "\n".join(out)


def plot(summary: list[dict[str, Any]], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    wls = sorted({r["workload"] for r in summary})
    fig, axes = plt.subplots(1, len(wls), figsize=(5 * len(wls), 4), squeeze=False)
    for ax, wl in zip(axes[0], wls):
        rs = [r for r in summary if r["workload"] == wl and "mem_x_naive" in r]
        for prefix, label in (("tiny@", "tiny (measured costs)"), ("tinyf@", "tiny (FLOP costs)")):
            tiny = sorted((r for r in rs if r["mode"].startswith(prefix)),
                          key=lambda r: r["mem_x_naive"])
            if tiny:
                ax.plot([r["mem_x_naive"] for r in tiny], [r["time_x_naive"] for r in tiny],
                        "o-", label=label)
        for r in rs:
            if not r["mode"].startswith("tiny"):
                ax.plot(r["mem_x_naive"], r["time_x_naive"], "s")
                ax.annotate(r["mode"], (r["mem_x_naive"], r["time_x_naive"]), fontsize=8)
        ax.set_title(wl)
        ax.set_xlabel("peak RSS growth / naive")
        ax.set_ylabel("step time / naive")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--worker":
        print(json.dumps(worker(argv[1], argv[2], int(argv[3]), int(argv[4]))))
        return 0
    if argv and argv[0] == "--time-worker":
        print(json.dumps(time_worker(argv[1], argv[5:], int(argv[2]), int(argv[3]),
                                     int(argv[4]))))
        return 0
    if argv and argv[0] == "--markdown":  # tables of a finished run's JSON
        for path in argv[1:]:
            print(markdown(json.loads(Path(path).read_text())["summary"]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workloads", nargs="+", default=["gpt2_medium", "hf_gpt2"],
                    choices=WORKLOADS)
    ap.add_argument("--budgets", nargs="+", type=float, default=list(DEFAULT_BUDGETS))
    ap.add_argument("--flops", nargs="*", type=float, default=[],
                    help="budgets also run with cost_model='flops' (mode tinyf@b)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0, help="shuffles the order of each round")
    ap.add_argument("--out", default="results/tmp/pareto")
    ap.add_argument("--timing", choices=("interleaved", "process", "threshold"),
                    default="interleaved",
                    help="interleaved (default): after the memory runs, one process per "
                         "workload (default allocator) times every mode, one step of each "
                         "per round in a shuffled order; process: a second process per "
                         "point (default allocator); threshold: the memory process's times "
                         "(MALLOC_MMAP_THRESHOLD_=65536)")
    ap.add_argument("--time-steps", type=int, default=8,
                    help="measured steps per mode with --timing interleaved")
    ap.add_argument("--dry-run", action="store_true")
    a = ap.parse_args(argv)
    points = [(w, m) for w in a.workloads for m in modes_for(w, a.budgets, a.flops)]
    if a.dry_run:
        for w, m in points:
            print(w, m)
        print(f"{len(points)} points x {a.rounds} rounds")
        return 0
    rng = random.Random(a.seed)
    rows: list[dict[str, Any]] = []
    total = len(points) * a.rounds
    for r in range(a.rounds):
        order = points[:]
        rng.shuffle(order)
        for w, m in order:
            res = run_point(w, m, a.warmup, a.steps, split=a.timing == "process")
            if res is None:
                total -= 1
                continue
            res["round"] = r
            rows.append(res)
            msg = res.get("error") or f"{res['mem_bytes'] / 2**20:.1f} MiB {res['time_s']:.3f} s"
            print(f"[{len(rows)}/{total}] round {r} {w} {m}: {msg}", file=sys.stderr, flush=True)
    summary = summarize(rows)
    timings: dict[str, dict[str, Any]] = {}
    if a.timing == "interleaved":
        for w in a.workloads:
            modes = [r["mode"] for r in summary if r["workload"] == w and "error" not in r]
            print(f"timing {w}: {len(modes)} modes interleaved, {a.time_steps} steps each",
                  file=sys.stderr, flush=True)
            timings[w] = _run_timing(w, modes, a.warmup + 1, a.time_steps, a.seed)
        merge_times(summary, timings)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keys = ["workload", "mode", "rounds", "mem_bytes", "mem_x_naive", "time_s", "time_x_naive",
            "time_min_s", "time_max_s", "time_cv_pct", "first_step_mem_bytes",
            "predicted_bytes", "mem_x_predicted", "error"]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=keys)
        wr.writeheader()
        for r in summary:
            wr.writerow({k: r.get(k, "") for k in keys})
    with open(out.with_suffix(".json"), "w") as f:
        import torch
        json.dump({"command": "python -m experiments.pareto " + " ".join(argv),
                   "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
                   "cpu": _cpu(), "timing": a.timing, "rows": rows, "timings": timings,
                   "summary": summary}, f, indent=1)
    try:
        plot(summary, out.with_suffix(".png"))
    except ImportError:
        print("matplotlib missing: no plot (pip install 'tiny-backprop[plot]')", file=sys.stderr)
    print(f"{'workload':<14} {'mode':<14} {'mem x naive':>11} {'time x naive':>12}")
    for r in summary:
        if "error" in r:
            print(f"{r['workload']:<14} {r['mode']:<14} ERROR {r['error'][:60]}")
        else:
            print(f"{r['workload']:<14} {r['mode']:<14} {r['mem_x_naive']:>11.2f} "
                  f"{r['time_x_naive']:>12.2f}")
    return 0


def _cpu() -> str:
    from benchmarks.results import _cpu_model
    return f"{_cpu_model()}, {os.cpu_count()} cores"


if __name__ == "__main__":
    sys.exit(main())
