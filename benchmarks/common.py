"""Flags shared by the benchmark CLIs, budget parsing and the progress indicator."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any

PROFILES = ("small", "medium", "large")
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def parse_budget(text: str) -> int | float | str:
    """Validate a ``--budget``: bytes ("1000000"), a size ("512MB", "2GiB") or a fraction
    of the store-all peak in (0, 1] ("0.5"). Returns int bytes, a float fraction, or the
    size string (HCModule parses sizes itself)."""
    s = str(text).strip()
    if re.fullmatch(r"\d+", s):
        n = int(s)
        if n <= 0:
            raise argparse.ArgumentTypeError("budget in bytes must be > 0")
        return n
    try:
        f = float(s)
    except ValueError:
        f = None
    if f is not None:
        if not 0 < f <= 1:
            raise argparse.ArgumentTypeError(
                f"budget {s!r}: a fraction must be in (0, 1]; give bytes as an integer")
        return f
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", s)
    if not m or m.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"budget {s!r}: expected bytes (1000000), a size (512MB, 2GiB) or a fraction (0.5)")
    return s


def budget_bytes(budget: int | float | str) -> int | None:
    """Bytes for an int or size budget; None for a fraction."""
    if isinstance(budget, float):
        return None
    if isinstance(budget, int):
        return budget
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)", budget)
    assert m is not None
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {n}")
    return n


def _nonneg_int(text: str) -> int:
    n = int(text) if re.fullmatch(r"\d+", text.strip()) else -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return n


def default_seed() -> int:
    """TINY_BACKPROP_SEED from the environment, else 0."""
    raw = os.environ.get("TINY_BACKPROP_SEED", "0")
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"TINY_BACKPROP_SEED must be an integer, got {raw!r}") from None


def add_common_flags(ap: argparse.ArgumentParser, modes: tuple[str, ...],
                     default_modes: tuple[str, ...]) -> None:
    """The flags every benchmark CLI takes."""
    ap.add_argument("--modes", nargs="+", choices=modes, default=list(default_modes),
                    metavar="MODE", help=f"modes to run (of: {', '.join(modes)}); "
                    f"default: {' '.join(default_modes)}")
    ap.add_argument("--profile", choices=PROFILES, default="small", help="workload size")
    ap.add_argument("--trials", type=_positive_int, default=1, help="trials per mode")
    ap.add_argument("--budget", type=parse_budget, default=0.5,
                    help="tiny's memory budget: bytes, a size like 512MB, or a fraction of "
                    "the store-all peak (default 0.5)")
    ap.add_argument("--compile-budget", type=float, default=0.5,
                    help="torch._functorch activation_memory_budget for compile_budget (0..1)")
    ap.add_argument("--warmup", type=_nonneg_int, default=1, help="warm-up steps")
    ap.add_argument("--steps", type=_positive_int, default=3, help="measured steps")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--export", metavar="PATH.json", help="write results JSON here "
                    "(default results/<benchmark>_<profile>.json)")
    ap.add_argument("--csv", metavar="PATH", help="also write a CSV")
    ap.add_argument("--seed", type=int, default=None,
                    help="seed for weights, data and dropout (default $TINY_BACKPROP_SEED or 0)")
    ap.add_argument("--threads", type=_positive_int, default=None,
                    help="torch threads in each worker (default: torch's default)")
    ap.add_argument("--timeout", type=float, default=1800.0,
                    help="seconds before a worker is stopped and reported as an error")
    ap.add_argument("--no-summary", action="store_true", help="do not print the summary table")


def check_common(ap: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Validation argparse cannot express; exits with a clear message."""
    if args.seed is None:
        args.seed = default_seed()
    if not 0.0 <= args.compile_budget <= 1.0:
        ap.error(f"--compile-budget must be in [0, 1], got {args.compile_budget}")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            ap.error("--device cuda: no CUDA device is available to torch here")
    if args.export and not args.export.endswith(".json"):
        ap.error(f"--export must name a .json file, got {args.export!r}")
    args.modes = list(dict.fromkeys(args.modes))


class Progress:
    """One line per finished unit of work (a point), with elapsed time, on stderr.

    With tqdm installed (``pip install 'tiny-backprop[progress]'``) a tqdm bar counts the
    points and each finished point's line is written above it (``tqdm.write``); without
    it, plain lines. ``use_tqdm=False`` forces plain lines.
    """

    def __init__(self, total: int, stream: Any = None, *, use_tqdm: bool | None = None) -> None:
        self.total = total
        self.done = 0
        self.t0 = time.perf_counter()
        self.stream = stream if stream is not None else sys.stderr
        self._bar: Any = None
        if use_tqdm is not False:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, file=self.stream, unit="point", leave=False,
                                 dynamic_ncols=True)

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(label, refresh=True)
        else:
            self._line(f"[{self.done + 1}/{self.total}] {label} ...")

    def finish(self, label: str, outcome: str) -> None:
        self.done += 1
        el = time.perf_counter() - self.t0
        self._line(f"[{self.done}/{self.total}] {label}: {outcome} (elapsed {el:.1f} s)")
        if self._bar is not None:
            self._bar.update(1)
            if self.done >= self.total:
                self.close()

    def close(self) -> None:
        """End the tqdm bar (idempotent; plain lines need nothing)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
