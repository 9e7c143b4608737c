"""Measurement primitives: step timing, CPU RSS peak, saved-tensor bytes, CUDA peaks.

CPU peak memory is the growth of the process's resident set size (bytes) over its value
just before the measured steps, sampled every 2 ms by a background thread. It is only
honest with ``MALLOC_MMAP_THRESHOLD_=65536`` in the environment (set by the runner for
its worker processes); without it glibc keeps freed blocks and RSS overstates live memory.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import torch


class RSSSampler:
    """Samples this process's RSS (bytes) every ``interval_s`` seconds in a thread.

    Use as a context manager; ``peak_growth_bytes`` is max(RSS) - RSS at entry.
    """

    def __init__(self, interval_s: float = 0.002) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval_s = interval_s
        self.baseline_bytes = 0
        self.peak_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._proc.memory_info().rss
            if rss > self.peak_bytes:
                self.peak_bytes = rss
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RSSSampler:
        self.baseline_bytes = self._proc.memory_info().rss
        self.peak_bytes = self.baseline_bytes
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        rss = self._proc.memory_info().rss
        self.peak_bytes = max(self.peak_bytes, rss)

    @property
    def peak_growth_bytes(self) -> int:
        return max(0, self.peak_bytes - self.baseline_bytes)


class _Held:
    """What the pack hook hands autograd: the tensor plus a release callback on deletion."""

    __slots__ = ("tensor", "_release")

    def __init__(self, tensor: torch.Tensor, release: Callable[[], None]) -> None:
        self.tensor = tensor
        self._release = release

    def __del__(self) -> None:
        self._release()


class SavedTensorCounter:
    """Counts bytes autograd saves for backward, by distinct storage, and their peak.

    Parameters (and any storage listed in ``exclude``) are not counted. Only tensors saved
    outside inner hooks are seen: torch's non-reentrant checkpoint installs its own hooks,
    so for checkpoint modes this misses the block inputs checkpoint keeps and whatever it
    recomputes during backward. Use it as the activation figure for eager modes without
    inner hooks; elsewhere it is a lower bound.
    """

    def __init__(self, exclude: Iterable[torch.Tensor] = ()) -> None:
        self._exclude = {t.untyped_storage().data_ptr() for t in exclude}
        self._refs: dict[int, int] = {}
        self._sizes: dict[int, int] = {}
        self.current_bytes = 0
        self.peak_bytes = 0
        self._hooks: Any = None

    def _pack(self, t: torch.Tensor) -> Any:
        if t.device.type == "meta":
            return t
        try:
            st = t.untyped_storage()
            key = st.data_ptr()
        except (RuntimeError, NotImplementedError):  # fake/functional tensors (tracing)
            return t
        if key in self._exclude:
            return t
        n = self._refs.get(key, 0)
        if n == 0:
            self._sizes[key] = st.nbytes()
            self.current_bytes += st.nbytes()
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        self._refs[key] = n + 1
        return _Held(t, lambda: self._release(key))

    def _release(self, key: int) -> None:
        n = self._refs.get(key, 0) - 1
        if n <= 0:
            self._refs.pop(key, None)
            self.current_bytes -= self._sizes.pop(key, 0)
        else:
            self._refs[key] = n

    @staticmethod
    def _unpack(obj: Any) -> torch.Tensor:
        return obj.tensor if isinstance(obj, _Held) else obj

    def __enter__(self) -> SavedTensorCounter:
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)


def synchronize(device: torch.device) -> None:
    """Wait for queued CUDA work (no-op on CPU) so that clocks measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], n: int, device: torch.device) -> list[float]:
    """Run ``step`` n times; returns the wall time of each (seconds)."""
    times = []
    for _ in range(n):
        synchronize(device)
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def step_stats(times: list[float]) -> dict[str, float | None]:
    """Mean, sample standard deviation (seconds) and coefficient of variation (%).

    Standard deviation and CV are None for a single step."""
    if not times:
        return {"step_time_mean_s": None, "step_time_std_s": None, "step_time_cv_pct": None}
    mean = statistics.fmean(times)
    std = statistics.stdev(times) if len(times) > 1 else None  # one step has no spread
    return {
        "step_time_mean_s": mean,
        "step_time_std_s": std,
        "step_time_cv_pct": 100.0 * std / mean if std is not None and mean > 0 else None,
    }


class GPUUtilSampler:
    """Mean GPU utilisation (%) over a window via NVML (nvidia-ml-py), None if unavailable."""

    def __init__(self, device_index: int = 0, interval_s: float = 0.05) -> None:
        self.interval_s = interval_s
        self._vals: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handle: Any = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml = pynvml
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        except Exception:
            self._handle = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._vals.append(float(self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu))
            except Exception:
                return
            self._stop.wait(self.interval_s)

    def __enter__(self) -> GPUUtilSampler:
        if self._handle is not None:
            self._thread = threading.Thread(target=self._run, name="nvml", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    @property
    def mean_pct(self) -> float | None:
        return statistics.fmean(self._vals) if self._vals else None
