#!/usr/bin/env bash
# GPU check for tiny-backprop, on a CUDA machine where torch is already installed:
#
#   1. builds the extension against that torch (pip install --no-build-isolation -e .);
#   2. runs the CUDA tests (pytest -m cuda: exact gradients, RNG replay, bf16, predicted vs
#      measured peak, budget="auto");
#   3. benchmarks the LM sizes small..2.7B (benchmarks.lm, context 512, batch 4,
#      forward_backward) at naive / torch checkpoint / tiny (budget "auto": what fits
#      beside the model) under a 16 GiB cap (torch.cuda.set_per_process_memory_fraction),
#      reporting which sizes train under the cap, peak max_memory_allocated (after
#      reset_peak_memory_stats) vs the plan's prediction, and step times;
#   4. writes results/gpu_<UTC time>.json naming the hardware (nvidia-smi name and
#      memory), torch and CUDA versions and the date, and prints a table.
#
# Designed to finish in under 8 minutes on one H200: each step has a timeout (install
# <= 210 s, tests <= 120 s), each size a per-point timeout, and a global deadline from the
# start (GPU_CHECK_BUDGET_S, default 420 s) after which the remaining sizes are recorded
# as "not run" instead of run; a size started before it ends within about 20 s after it.
#
#   scripts/gpu_check.sh                      # everything
#   SIZES="small medium" scripts/gpu_check.sh # fewer sizes
#   PYTHON=/path/to/python CAP_GIB=16 scripts/gpu_check.sh
#
# Exit status: 0 all steps ran (benchmark rows may be OOM: that is a result), 1 a step
# failed (install, tests or a benchmark ERROR), 2 no GPU here.
set -u -o pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CAP_GIB=${CAP_GIB:-16}
SIZES=${SIZES:-"small medium large xl 2.7B"}
BUDGET_S=${GPU_CHECK_BUDGET_S:-420}
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT_JSON:-results/gpu_${STAMP}.json}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tb-gpu-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

say() { printf '[gpu_check %4ds] %s\n' "$(( $(date +%s) - START ))" "$*"; }

# -- 0. is there a GPU? ------------------------------------------------------------------
if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi missing or failing); nothing to check." >&2
    echo "gpu_check: run it on a CUDA machine with torch installed; CPU checks are 'make test'." >&2
    exit 2
fi
if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "gpu_check: nvidia-smi works but $PY's torch sees no CUDA device" \
         "(a CPU-only torch build?); install a CUDA torch first." >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total --format=csv > "$WORK/gpu.csv" 2>&1
say "GPU: $(tail -n +2 "$WORK/gpu.csv" | head -1)"

# -- 1. build the extension on this torch ------------------------------------------------
say "building the extension (pip install --no-build-isolation --no-deps -e .)"
install_rc=0
timeout 120 "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e . \
    > "$WORK/install.log" 2>&1 || install_rc=$?
if [ "$install_rc" -ne 0 ]; then  # e.g. no network for setuptools: build in place instead
    say "pip install failed (rc $install_rc); trying setup.py build_ext --inplace"
    timeout 90 "$PY" setup.py -q build_ext --inplace >> "$WORK/install.log" 2>&1 && install_rc=0
fi
"$PY" -c "import tiny_backprop._C" >> "$WORK/install.log" 2>&1 || install_rc=1
[ "$install_rc" -ne 0 ] && tail -n 20 "$WORK/install.log"
say "install rc=$install_rc"

# -- 2. the CUDA tests -------------------------------------------------------------------
say "pytest -m cuda"
tests_rc=0
timeout 120 "$PY" -m pytest -q -m cuda -p no:cacheprovider \
    > "$WORK/pytest.log" 2>&1 || tests_rc=$?
tail -n 15 "$WORK/pytest.log"
say "pytest rc=$tests_rc"

# -- 3. the LM size table under the cap --------------------------------------------------
point_timeout() {  # seconds per (size, mode) point
    case "$1" in
        small) echo 40 ;; medium) echo 50 ;; large) echo 60 ;; xl) echo 75 ;; *) echo 60 ;;
    esac
}
bench_rc=0
: > "$WORK/not_run.txt"
for size in $SIZES; do
    left=$((DEADLINE - $(date +%s)))
    per=$(point_timeout "$size")
    if [ "$left" -lt 30 ]; then
        say "$size: not run (global deadline, ${left}s left)"
        echo "$size" >> "$WORK/not_run.txt"
        continue
    fi
    [ "$per" -gt $((left / 3)) ] && per=$((left / 3))
    [ "$per" -lt 10 ] && per=10
    say "$size: naive checkpoint tiny, ${per}s per point"
    timeout $((3 * per + 20)) "$PY" -m benchmarks.lm --device cuda --model-size "$size" \
        --mode naive checkpoint tiny --pass-type forward_backward --context-length 512 \
        --batch-size 4 --warmup-steps 1 --measure-steps 3 --budget auto \
        --memory-cap-gib "$CAP_GIB" --timeout "$per" --seed 0 \
        --export "$WORK/lm_$size.json" > "$WORK/lm_$size.log" 2>&1
    rc=$?
    # rc 1 = some point was an ERROR (OOM and timeouts are rows); anything else is a crash
    [ "$rc" -ne 0 ] && bench_rc=1
    tail -n 4 "$WORK/lm_$size.log" | sed "s/^/    /"
done

# -- 4. one JSON file ------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")"
"$PY" - "$WORK" "$OUT" "$CAP_GIB" "$install_rc" "$tests_rc" "$bench_rc" "$START" <<'PYEOF'
import datetime, json, pathlib, sys, time
import torch

work, out, cap_gib = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), float(sys.argv[3])
install_rc, tests_rc, bench_rc, start = map(int, sys.argv[4:8])
gpu_lines = (work / "gpu.csv").read_text().strip().splitlines()
gpus = [dict(zip(["name", "memory.total"], [s.strip() for s in ln.split(",")]))
        for ln in gpu_lines[1:]]
rows = []
for f in sorted(work.glob("lm_*.json")):
    rows += json.loads(f.read_text())["rows"]
not_run = [s for s in (work / "not_run.txt").read_text().split() if s]
for r in rows:
    n = r.get("n_params") or 0
    peak, base, pred = r.get("peak_bytes"), r.get("baseline_bytes"), r.get("predicted_peak_bytes")
    # activations at the peak: above what was allocated before the step, less the
    # gradients that backward allocates (fp32, one per parameter)
    act = None if peak is None or base is None else peak - base - 4 * n
    r["measured_activation_peak_bytes"] = act
    r["predicted_vs_measured_pct"] = (None if not pred or act is None
                                      else round(100.0 * (act - pred) / pred, 2))
    r["fits_under_cap"] = r.get("status") == "ok"
pytest_tail = (work / "pytest.log").read_text().strip().splitlines()[-3:]
doc = {
    "what": "scripts/gpu_check.sh: CUDA tests and LM sizes under a memory cap",
    "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "hardware": {"nvidia_smi": gpus, "torch_device_name": (
        torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)},
    "torch": torch.__version__, "cuda": torch.version.cuda,
    "cap_gib": cap_gib, "context_length": 512, "batch_size": 4, "tiny_budget": "auto",
    "install_rc": install_rc, "pytest_rc": tests_rc, "pytest_tail": pytest_tail,
    "bench_rc": bench_rc, "sizes_not_run": not_run,
    "wall_s": round(time.time() - start, 1), "rows": rows,
}
out.write_text(json.dumps(doc, indent=2, default=str) + "\n", encoding="utf-8")
print(f"\n{'size':<7}{'mode':<11}{'pass':<17}{'status':<8}{'step ms':>9}{'peak GiB':>10}"
      f"{'act GiB':>9}{'pred GiB':>10}{'pred err%':>10}")
g = lambda v: "-" if v is None else f"{v / 2**30:.2f}"  # noqa: E731
for r in rows:
    ms = "-" if r.get("mean_s") is None else f"{r['mean_s'] * 1e3:.1f}"
    err = r["predicted_vs_measured_pct"]
    print(f"{r['model_size']:<7}{r['mode']:<11}{r['pass_type']:<17}{r['status']:<8}{ms:>9}{g(r.get('peak_bytes')):>10}"
          f"{g(r['measured_activation_peak_bytes']):>9}{g(r.get('predicted_peak_bytes')):>10}"
          f"{'-' if err is None else f'{err:+.1f}':>10}")
fits = sorted({r["model_size"] for r in rows if r["fits_under_cap"]})
print(f"\ntrains under {cap_gib:g} GiB: " + ", ".join(
    f"{s} ({'/'.join(dict.fromkeys(r['mode'] for r in rows if r['model_size'] == s and r['fits_under_cap']))})"
    for s in fits) if fits else f"\nnothing trains under {cap_gib:g} GiB")
print(f"wrote {out}")
PYEOF
say "done"
[ "$install_rc" -eq 0 ] && [ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ] && exit 0
exit 1
