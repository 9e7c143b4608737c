"""The shared main() of the zoo benchmark CLIs (transformer, gpt2, resnet, unet, long_context)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from benchmarks.common import add_common_flags, check_common
from benchmarks.modes import ZOO_MODES
from benchmarks.runner import Variant, run_benchmark

DEFAULT_MODES = ("naive", "checkpoint", "checkpoint_seq", "tiny")


def zoo_main(
    benchmark: str,
    model: str,
    description: str,
    argv: list[str] | None = None,
    *,
    extra_flags: Callable[[argparse.ArgumentParser], None] | None = None,
    variants: Callable[[argparse.Namespace], list[Variant]] | None = None,
) -> int:
    """Parse flags, run every mode in its own worker, export and summarise."""
    ap = argparse.ArgumentParser(prog=f"python -m benchmarks.{benchmark}", description=description)
    add_common_flags(ap, ZOO_MODES, DEFAULT_MODES)
    if extra_flags:
        extra_flags(ap)
    args = ap.parse_args(argv)
    check_common(ap, args)
    if variants is None:
        vs = [Variant({"source": "zoo", "model": model, "profile": args.profile})]
    else:
        vs = variants(args)
    results = run_benchmark(benchmark, vs, args, argv=sys.argv[1:] if argv is None else argv)
    return 0 if any(r.ok for r in results) else 1
