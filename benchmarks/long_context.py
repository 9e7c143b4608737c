"""Context-length sweep of the GPT-2-style decoder: memory and time per mode vs sequence length.

    python -m benchmarks.long_context --profile small --seq-lens 64 128 256
"""

from __future__ import annotations

import argparse
import sys

from benchmarks.cli import zoo_main
from benchmarks.runner import Variant

SEQ_LENS = {"small": (64, 128, 256), "medium": (256, 512, 1024), "large": (512, 1024, 2048)}


def _flags(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--seq-lens", type=int, nargs="+", default=None, metavar="N",
                    help="sequence lengths (default by profile: "
                    + "; ".join(f"{k}: {' '.join(map(str, v))}" for k, v in SEQ_LENS.items()) + ")")


def _variants(args: argparse.Namespace) -> list[Variant]:
    lens = args.seq_lens or SEQ_LENS[args.profile]
    if any(n < 2 for n in lens):
        raise SystemExit("long_context: --seq-lens must be >= 2")
    return [Variant({"source": "zoo", "model": "gpt2", "profile": args.profile,
                     "overrides": {"seq": n}}, name=f"seq={n}", extra={"seq_len": n})
            for n in lens]


def main(argv: list[str] | None = None) -> int:
    return zoo_main("long_context", "gpt2", __doc__.splitlines()[0], argv,
                    extra_flags=_flags, variants=_variants)


if __name__ == "__main__":
    sys.exit(main())
