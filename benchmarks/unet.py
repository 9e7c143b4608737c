"""Diffusion-style U-Net (skip concatenations): naive vs checkpointing vs tiny-backprop.

    python -m benchmarks.unet --profile small --modes naive checkpoint tiny --trials 3
"""

from __future__ import annotations

import sys

from benchmarks.cli import zoo_main


def main(argv: list[str] | None = None) -> int:
    return zoo_main("unet", "unet", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
