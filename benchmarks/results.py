"""The benchmark result record and its JSON/CSV export.

JSON files are ``{"meta": {...}, "results": [BenchmarkResult, ...]}``. ``meta`` holds the
hardware (CPU model, cores, GPU name), torch version, date (UTC, ISO 8601) and command line.

Fields beyond the benchmark guide's ``BenchmarkResult`` (all optional):

- ``profile``, ``variant`` (e.g. ``"seq=512"`` in the long-context sweep), ``device``.
- ``status``: ``"ok"``, ``"error"``, ``"oom"`` or ``"skip"``; ``error`` holds the message.
- tiny's numbers, top level: ``held_activation_bytes`` (bytes autograd held for backward at
  the peak of one step; source in ``extra_metrics["held_activation_source"]``),
  ``predicted_peak_bytes`` (the plan's prediction, bytes), ``plan_time_s`` and
  ``recompute_time_s`` (seconds), ``None`` where the runtime does not report them.
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any


@dataclass
class BenchmarkResult:
    """One trial of one mode of one benchmark. Times in seconds, memory in bytes."""

    benchmark: str
    mode: str
    trial: int
    wall_time_s: float | None = None
    peak_mem_bytes: int | None = None
    peak_mem_reserved_bytes: int | None = None
    peak_cpu_bytes: int | None = None
    gpu_utilization_pct: float | None = None
    loss_value: float | None = None
    extra_metrics: dict[str, Any] = field(default_factory=dict)
    profile: str | None = None
    variant: str = ""
    device: str | None = None
    status: str = "ok"
    error: str | None = None
    held_activation_bytes: int | None = None
    predicted_peak_bytes: int | None = None
    plan_time_s: float | None = None
    recompute_time_s: float | None = None

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BenchmarkResult:
        """Build from a dict, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def peak_bytes(self) -> int | None:
        """The memory figure to compare: CUDA allocated peak if measured, else CPU RSS growth."""
        return self.peak_mem_bytes if self.peak_mem_bytes is not None else self.peak_cpu_bytes


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_meta(argv: list[str] | None = None) -> dict[str, Any]:
    """Hardware, software and command line of this run (for the JSON header)."""
    import psutil
    import torch

    meta: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable), "-m", *(argv or sys.argv)]),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_physical": psutil.cpu_count(logical=False),
        "ram_bytes": psutil.virtual_memory().total,
        "torch_threads": torch.get_num_threads(),
        "gpu_name": None,
        "cuda_version": torch.version.cuda,
    }
    if torch.cuda.is_available():
        meta["gpu_name"] = torch.cuda.get_device_name(0)
    return meta


def write_json(path: str | Path, results: list[BenchmarkResult], meta: dict[str, Any]) -> None:
    """Write ``{"meta": meta, "results": [...]}`` (parent folders are created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = {"meta": meta, "results": [r.to_dict() for r in results]}
    p.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")


CSV_FIELDS = [
    "benchmark", "profile", "variant", "mode", "trial", "status", "wall_time_s",
    "peak_mem_bytes", "peak_mem_reserved_bytes", "peak_cpu_bytes", "gpu_utilization_pct",
    "loss_value", "held_activation_bytes", "predicted_peak_bytes", "plan_time_s",
    "recompute_time_s", "step_time_std_s", "step_time_cv_pct", "grads_match_naive", "error",
]


def write_csv(path: str | Path, results: list[BenchmarkResult]) -> None:
    """One row per result; ``extra_metrics`` keys in ``CSV_FIELDS`` are flattened."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with p.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in results:
            row = {**r.extra_metrics, **r.to_dict()}
            w.writerow({k: row.get(k) for k in CSV_FIELDS})


def load_results(path: str | Path) -> tuple[dict[str, Any], list[BenchmarkResult]]:
    """Read a results JSON: ``{"meta", "results"}`` or a bare list (the guide's format)."""
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(raw, list):
        return {}, [BenchmarkResult.from_dict(e) for e in raw]
    if not isinstance(raw, dict) or "results" not in raw:
        raise ValueError(f"{path}: expected {{'meta', 'results'}} or a list of results")
    return raw.get("meta", {}), [BenchmarkResult.from_dict(e) for e in raw["results"]]
