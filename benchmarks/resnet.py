"""ResNet classifier (BatchNorm): naive vs checkpointing vs tiny-backprop.

    python -m benchmarks.resnet --profile small --modes naive checkpoint tiny --trials 3
"""

from __future__ import annotations

import sys

from benchmarks.cli import zoo_main


def main(argv: list[str] | None = None) -> int:
    return zoo_main("resnet", "resnet", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
