"""GPT-2-style decoder LM: naive vs checkpointing vs tiny-backprop.

    python -m benchmarks.gpt2 --profile small --modes naive checkpoint tiny --trials 3
"""

from __future__ import annotations

import sys

from benchmarks.cli import zoo_main


def main(argv: list[str] | None = None) -> int:
    return zoo_main("gpt2", "gpt2", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
