"""Small random-init Hugging Face causal LMs (GPT-2, Llama; built from configs, no
downloads): naive vs Hugging Face gradient checkpointing vs tiny-backprop.

    python -m benchmarks.hf --model gpt2 --profile small --modes naive hf_checkpointing tiny
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.common import add_common_flags, check_common
from benchmarks.modes import HF_MODES
from benchmarks.runner import Variant, run_benchmark
from benchmarks.workloads import HF_PROFILES


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.hf", description=__doc__.splitlines()[0])
    ap.add_argument("--model", choices=sorted(HF_PROFILES), default="gpt2")
    add_common_flags(ap, HF_MODES, HF_MODES)
    args = ap.parse_args(argv)
    check_common(ap, args)
    variant = Variant({"source": "hf", "model": args.model, "profile": args.profile})
    results = run_benchmark(f"hf_{args.model}", [variant], args,
                            argv=sys.argv[1:] if argv is None else argv)
    return 0 if any(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
