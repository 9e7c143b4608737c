"""How many bytes of activations fit on a device: the figure behind ``budget="auto"``.

    from tiny_backprop.device_memory import available_activation_bytes, explain_available_bytes

    budget = available_activation_bytes("cuda:0", model=model, optimizer=opt)
    print(explain_available_bytes("cuda:0", model=model, optimizer=opt))  # every term

The figure is, in bytes::

    free                       memory the device can still hand out (see below)
  - params                     parameters and buffers of `model` not yet on the device
  - grads                      gradients not yet allocated (params requiring grad, no .grad)
  - optimizer state            state the optimizer will create on its first step
  - reserve                    what the caller keeps for itself (explicit bytes)
  - margin                     margin * free + margin_fixed_bytes (default 10% + 64 MiB)
  = result                     bytes left for held activations

Things already allocated (parameters on the device, existing gradients and optimizer
state) are not subtracted: they are already missing from ``free``.

Free memory by device type:

- CUDA: ``torch.cuda.mem_get_info(device)`` free bytes plus the caching allocator's
  reserved-but-unallocated bytes (``memory_reserved - memory_allocated``, reusable by
  this process), capped by ``torch.cuda.set_per_process_memory_fraction`` when one is set
  (``fraction * total - memory_allocated``).
- CPU: ``psutil.virtual_memory().available``, and, when the process runs in a cgroup
  with a memory limit, at most that limit minus the cgroup's working set (v2:
  ``memory.max - (memory.current - inactive_file)``; v1: ``memory.limit_in_bytes -
  (memory.usage_in_bytes - total_inactive_file)``).
- Anything else ('mps', 'xla', ...): free memory cannot be read; a ValueError says to
  pass ``free_bytes=`` or to give HCModule an explicit byte budget.

The margin covers what is not modelled: the optimizer step's temporaries (a foreach
AdamW step allocates about one extra copy of the parameters for a moment), cuBLAS/cuDNN
workspaces, fragmentation of the caching allocator, the loss and logits if they are
not counted by the plan, and other processes allocating after the reading.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .errors import BudgetError

MARGIN_FRACTION = 0.10  # default share of free memory kept back
MARGIN_FIXED_BYTES = 64 * 2**20  # default fixed headroom kept back, bytes (64 MiB)
_CGROUP_ROOT = Path("/sys/fs/cgroup")
_CGROUP_UNLIMITED = 2**60  # cgroup v1 reports "no limit" as a huge number

# Optimizer state created on the first step, in units of the parameter's bytes.
_STATE_FACTORS = {"Adam": 2, "AdamW": 2, "NAdam": 2, "RAdam": 2, "Adamax": 2, "Adagrad": 1,
                  "RMSprop": 1, "Adadelta": 2, "SGD": 0, "ASGD": 1, "Rprop": 2}
_UNKNOWN_STATE_FACTOR = 2


@dataclass(frozen=True)
class DeviceMemory:
    """Every term of `available_activation_bytes` (all in bytes).

    Attributes:
        device: the device the figure is for, e.g. "cuda:0" or "cpu".
        free_bytes: memory the device can still hand out to this process.
        free_source: where ``free_bytes`` came from (a short sentence).
        param_bytes: parameters and buffers of the model not yet on the device.
        grad_bytes: gradients that backward will allocate.
        optimizer_bytes: optimizer state the first step will allocate.
        optimizer_existing_bytes: optimizer state that already exists on the device
            (not subtracted: already missing from ``free_bytes``).
        reserve_bytes: the caller's explicit reserve.
        margin_bytes: the safety margin subtracted.
        result_bytes: what is left for held activations (may be <= 0 in an error).
        notes: assumptions made (unknown optimizer types, missing model, ...).
    """

    device: str
    free_bytes: int
    free_source: str
    param_bytes: int
    grad_bytes: int
    optimizer_bytes: int
    optimizer_existing_bytes: int
    reserve_bytes: int
    margin_bytes: int
    result_bytes: int
    notes: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        from .plan import format_bytes

        rows = [("free", self.free_bytes, self.free_source),
                ("- params", self.param_bytes, "parameters and buffers not yet on the device"),
                ("- grads", self.grad_bytes, "gradients not yet allocated"),
                ("- optimizer", self.optimizer_bytes,
                 f"state to be created ({format_bytes(self.optimizer_existing_bytes)} "
                 "already allocated)"),
                ("- reserve", self.reserve_bytes, "reserve="),
                ("- margin", self.margin_bytes, "safety margin"),
                ("= activations", self.result_bytes, "")]
        lines = [f"activation memory on {self.device}:"]
        lines += [f"  {k:<14}{format_bytes(v):>12}  {why}".rstrip() for k, v, why in rows]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


def _as_device(device: str | int | torch.device) -> torch.device:
    if isinstance(device, bool):
        raise TypeError("device must be a torch.device, a string like 'cuda:0' or an int")
    if isinstance(device, int):
        return torch.device("cuda", device)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(dev)!r}: CUDA is not available to torch here")
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def _same_device(t: torch.Tensor, dev: torch.device) -> bool:
    if t.device.type != dev.type:
        return False
    return dev.index is None or t.device.index == dev.index


def _nbytes(t: torch.Tensor) -> int:
    return int(t.numel()) * int(t.element_size())


# -- free memory -----------------------------------------------------------------------


def _cuda_free(dev: torch.device) -> tuple[int, str]:
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {str(dev)!r}: CUDA is not available to torch here")
    free, total = torch.cuda.mem_get_info(dev)
    allocated = int(torch.cuda.memory_allocated(dev))
    cached = max(0, int(torch.cuda.memory_reserved(dev)) - allocated)
    value = int(free) + cached
    source = (f"torch.cuda.mem_get_info free {int(free)} + allocator cache {cached} "
              "(memory_reserved - memory_allocated)")
    fraction = float(torch.cuda.get_per_process_memory_fraction(dev))
    if fraction < 1.0:
        capped = max(0, int(fraction * int(total)) - allocated)
        if capped < value:
            value = capped
            source = (f"set_per_process_memory_fraction({fraction:g}) cap: "
                      f"{fraction:g} * total {int(total)} - memory_allocated {allocated}")
    return value, source


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _read_stat(path: Path, key: str) -> int:
    try:
        for line in path.read_text(encoding="ascii").splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, UnicodeDecodeError, ValueError):
        pass
    return 0


def _cgroup_free(root: Path) -> tuple[int, str] | None:
    """Bytes the cgroup memory limit still allows, or None without a limit."""
    limit = _read_int(root / "memory.max")  # cgroup v2
    if limit is not None:
        usage = _read_int(root / "memory.current")
        if usage is None:
            return None
        inactive = _read_stat(root / "memory.stat", "inactive_file")
        working = max(0, usage - inactive)
        return max(0, limit - working), (f"cgroup v2 memory.max {limit} - working set "
                                         f"{working} (memory.current - inactive_file)")
    v1 = root / "memory"
    limit = _read_int(v1 / "memory.limit_in_bytes")
    if limit is None or limit >= _CGROUP_UNLIMITED:
        return None
    usage = _read_int(v1 / "memory.usage_in_bytes")
    if usage is None:
        return None
    working = max(0, usage - _read_stat(v1 / "memory.stat", "total_inactive_file"))
    return max(0, limit - working), f"cgroup v1 limit {limit} - working set {working}"


def _cpu_free() -> tuple[int, str]:
    import psutil

    value = int(psutil.virtual_memory().available)
    source = "psutil.virtual_memory().available"
    cg = _cgroup_free(_CGROUP_ROOT)
    if cg is not None and cg[0] < value:
        value, source = cg
    return value, source


def _free_bytes(dev: torch.device) -> tuple[int, str]:
    if dev.type == "cuda":
        return _cuda_free(dev)
    if dev.type == "cpu":
        return _cpu_free()
    raise ValueError(
        f"cannot read free memory on device type {dev.type!r} (only 'cuda' and 'cpu' are "
        "known); pass free_bytes=<bytes the device has free> to available_activation_bytes "
        "(and reserve=<bytes> for what you keep), or give HCModule an explicit byte budget "
        "such as budget='8GiB' instead of budget='auto'")


# -- what training will still allocate -------------------------------------------------


def _model_bytes(model: torch.nn.Module | None, dev: torch.device) -> tuple[int, int]:
    """(params + buffers not yet on `dev`, grads not yet allocated on `dev`), bytes."""
    if model is None:
        return 0, 0
    params = {id(p): p for p in model.parameters()}
    buffers = {id(b): b for b in model.buffers()}
    moving = sum(_nbytes(t) for t in (*params.values(), *buffers.values())
                 if not _same_device(t, dev))
    grads = sum(_nbytes(p) for p in params.values() if p.requires_grad
                and (p.grad is None or not _same_device(p.grad, dev)))
    return moving, grads


def _optimizer_bytes(optimizer: Any, dev: torch.device, notes: list[str]) -> tuple[int, int]:
    """(state still to be created, state already on `dev`), bytes."""
    if optimizer is None:
        return 0, 0
    name = type(optimizer).__name__
    factor = _STATE_FACTORS.get(name)
    defaults = getattr(optimizer, "defaults", {}) or {}
    if factor is None:
        factor = _UNKNOWN_STATE_FACTOR
        notes.append(f"optimizer {name} is not known: assumed {factor}x the parameter bytes "
                     "of state (pass reserve= to correct)")
    elif name in ("Adam", "AdamW") and defaults.get("amsgrad"):
        factor = 3
    elif name == "SGD" and defaults.get("momentum", 0):
        factor = 1
    elif name == "RMSprop":
        factor = 1 + bool(defaults.get("momentum", 0)) + bool(defaults.get("centered"))
    state = getattr(optimizer, "state", {}) or {}
    todo = existing = 0
    seen: set[int] = set()
    for group in getattr(optimizer, "param_groups", []):
        for p in group.get("params", []):
            if id(p) in seen or not isinstance(p, torch.Tensor):
                continue
            seen.add(id(p))
            st = state.get(p) or {}
            if st:
                for key, v in st.items():
                    if key == "step" or not isinstance(v, torch.Tensor):
                        continue  # the step count is a CPU scalar unless capturable
                    if _same_device(v, dev):
                        existing += _nbytes(v)
                    else:  # load_state_dict moves state to the parameter's device
                        todo += _nbytes(v)
            elif p.requires_grad:
                todo += factor * _nbytes(p)
    return todo, existing


def explain_available_bytes(
    device: str | int | torch.device,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    reserve: int | None = None,
    margin: float = MARGIN_FRACTION,
    margin_fixed_bytes: int = MARGIN_FIXED_BYTES,
    free_bytes: int | None = None,
) -> DeviceMemory:
    """Every term of `available_activation_bytes`, without raising on a result <= 0.

    Same arguments as `available_activation_bytes`; see there.
    """
    dev = _as_device(device)
    for name, value in (("reserve", reserve), ("margin_fixed_bytes", margin_fixed_bytes),
                        ("free_bytes", free_bytes)):
        if value is not None and (isinstance(value, bool)
                                  or not isinstance(value, numbers.Integral) or value < 0):
            raise ValueError(f"{name} must be None or int bytes >= 0, got {value!r}")
    if isinstance(margin, bool) or not isinstance(margin, numbers.Real) \
            or not (math.isfinite(float(margin)) and 0.0 <= float(margin) < 1.0):
        raise ValueError(f"margin is a fraction of free memory in [0, 1), got {margin!r}")
    notes: list[str] = []
    if free_bytes is None:
        free, source = _free_bytes(dev)
    else:
        free, source = int(free_bytes), "free_bytes= given by the caller"
    if model is None:
        notes.append("no model given: its parameters and gradients are not counted")
    params, grads = _model_bytes(model, dev)
    if optimizer is None:
        notes.append("no optimizer given: its state is not counted")
    opt_todo, opt_existing = _optimizer_bytes(optimizer, dev, notes)
    reserve_b = int(reserve or 0)
    margin_b = int(float(margin) * free) + int(margin_fixed_bytes)
    result = free - params - grads - opt_todo - reserve_b - margin_b
    return DeviceMemory(device=str(dev), free_bytes=free, free_source=source,
                        param_bytes=params, grad_bytes=grads, optimizer_bytes=opt_todo,
                        optimizer_existing_bytes=opt_existing, reserve_bytes=reserve_b,
                        margin_bytes=margin_b, result_bytes=result, notes=tuple(notes))


def available_activation_bytes(
    device: str | int | torch.device,
    *,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    reserve: int | None = None,
    margin: float = MARGIN_FRACTION,
    margin_fixed_bytes: int = MARGIN_FIXED_BYTES,
    free_bytes: int | None = None,
) -> int:
    """Bytes of activations that fit on `device` beside the model and its training state.

    Args:
        device: "cuda", "cuda:1", an int (a CUDA index), "cpu" or a torch.device.
        model: the model to be trained; its parameters and buffers not yet on `device`
            are subtracted (they will be moved there), and gradients for parameters that
            require grad and have no ``.grad`` on `device` yet (one parameter's bytes
            each). Shared (tied) parameters are counted once.
        optimizer: its state that does not exist yet: Adam, AdamW, NAdam, RAdam, Adamax,
            Adadelta, Rprop 2x the parameter bytes (AMSGrad 3x); SGD 0x (1x with
            momentum); RMSprop 1x (+1x momentum, +1x centered); Adagrad, ASGD 1x. State
            that already exists is read: on `device` it is already allocated (not
            subtracted), elsewhere it is subtracted at its size. An optimizer of any
            other type is assumed to create 2x the parameter bytes (recorded in the
            notes of `explain_available_bytes`; correct it with `reserve`).
        reserve: bytes the caller keeps for itself (data batches, logits, other models).
        margin: fraction of the free bytes kept back, in [0, 1) (default 0.10).
        margin_fixed_bytes: fixed bytes kept back on top (default 64 MiB): CUDA context
            growth, cuBLAS workspaces, the optimizer step's temporaries.
        free_bytes: the device's free bytes, when they cannot be read (e.g. 'mps', 'xla')
            or to plan for another machine; None reads them (see the module docstring).

    Returns:
        The activation budget in bytes (> 0), for ``HCModule(model, budget=...)``.

    Raises:
        BudgetError: nothing is left for activations; the message says how many bytes are
            missing, ``budget_bytes`` is the (<= 0) result and ``minimum_bytes`` is 1; the
            error's ``memory`` attribute is the `DeviceMemory` breakdown.
        ValueError: free memory cannot be read on this device type (pass ``free_bytes=``
            or use an explicit byte budget), or a bad reserve/margin.
        RuntimeError: a CUDA device while CUDA is not available.
    """
    report = explain_available_bytes(device, model=model, optimizer=optimizer, reserve=reserve,
                                     margin=margin, margin_fixed_bytes=margin_fixed_bytes,
                                     free_bytes=free_bytes)
    if report.result_bytes <= 0:
        from .plan import format_bytes

        missing = 1 - report.result_bytes
        err = BudgetError(
            f"no memory left for activations on {report.device}: {format_bytes(missing)} "
            f"({missing} bytes) missing.\n{report}",
            minimum_bytes=1, budget_bytes=report.result_bytes)
        err.memory = report  # type: ignore[attr-defined]
        raise err
    return report.result_bytes
