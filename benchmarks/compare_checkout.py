"""Step time of HCModule from this checkout against another checkout of the project
(for instance round 1's graph executor), and the plain model, interleaved.

    git worktree add ../tb-old <commit> && (cd ../tb-old && python setup.py build_ext --inplace)
    python -m benchmarks.compare_checkout --other ../tb-old --model gpt2 --profile medium \\
        --budget 0.5 --rounds 3 --steps 5

Every (round, mode) is a fresh process with one torch thread and
MALLOC_MMAP_THRESHOLD_=65536, its PYTHONPATH pointing at the checkout; modes run in turn
within each round. Per mode: the first step (trace/capture + plan + step) and the
median of the steady steps after one warm-up, in seconds, and the medians over rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_WORKER = r"""
import json, sys, time, torch
torch.set_num_threads(1)
from tiny_backprop import HCModule, zoo
model, profile, budget, steps = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
w = zoo.build(model, profile)
fn = HCModule(w.model, budget) if budget > 0 else w.model
ts = []
for i in range(steps + 2):
    t0 = time.perf_counter()
    out = fn(*w.args, **w.kwargs)
    (out if out.dim() == 0 else out.float().pow(2).mean()).backward()
    w.model.zero_grad(set_to_none=True)
    ts.append(time.perf_counter() - t0)
print(json.dumps({"first_s": ts[0], "steady_s": ts[2:]}))
"""


def run(path: Path, model: str, profile: str, budget: float, steps: int) -> dict:
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", OMP_NUM_THREADS="1",
               PYTHONPATH=str(path))
    proc = subprocess.run([sys.executable, "-c", _WORKER, model, profile, str(budget),
                           str(steps)], cwd="/", env=env, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="path of the other checkout (built)")
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--profile", default="medium")
    ap.add_argument("--budget", type=float, default=0.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args(argv)
    other = Path(a.other).resolve()
    if not (other / "tiny_backprop").is_dir():
        ap.error(f"--other {a.other!r} has no tiny_backprop/ package")
    modes = {"this": (ROOT, a.budget), "other": (other, a.budget), "naive": (ROOT, 0.0)}
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(a.rounds):
        for m, (path, budget) in modes.items():
            res = run(path, a.model, a.profile, budget, a.steps)
            rows[m].append(res)
            msg = res.get("error") or (f"first {res['first_s']:.3f} s, steady median "
                                       f"{statistics.median(res['steady_s']):.3f} s")
            print(f"round {r} {m}: {msg}", file=sys.stderr, flush=True)
    summary = {}
    for m, rs in rows.items():
        ok = [x for x in rs if "error" not in x]
        if ok:
            summary[m] = {"steady_median_s": statistics.median(
                s for x in ok for s in x["steady_s"]),
                "first_median_s": statistics.median(x["first_s"] for x in ok)}
    base = summary.get("naive", {}).get("steady_median_s")
    for m, s in summary.items():
        extra = f" (x{s['steady_median_s'] / base:.3f} of naive)" if base else ""
        print(f"{m:>6}: steady {s['steady_median_s']:.3f} s{extra}, first step "
              f"{s['first_median_s']:.3f} s")
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": "python -m benchmarks.compare_checkout " + " ".join(argv or sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d"), "rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
