"""Planning API: budgets, planner choice and the `Plan` object.

The C core (``tiny_backprop._C``) plans and simulates; this module parses budgets,
checks arguments, turns the flat preorder encoding into `Keep`/`Region` trees and
raises `BudgetError` when nothing fits.

Budget semantics: a budget counts every byte held at once by the plan (the chain's
input x_0, stored boundaries and saved tensors), in bytes. A plan never exceeds it.

Infeasible budgets: `BudgetError.minimum_bytes` is, for ``planner="optimal"``, the
exact smallest budget (bytes, computed by a min-memory DP with no discretisation) for
which the model has any schedule; at or above it a plan is always returned (if the
discretised DP finds nothing, the min-memory schedule is used). For the budget-blind
baselines it is that baseline's own peak.
"""

from __future__ import annotations

import math
import numbers
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Union

from . import chain as _chain
from .errors import BudgetError
from .tree import Keep, Node, Region, format_tree

PLANNERS: tuple[str, ...] = ("optimal", "store_all", "per_stage", "sqrt", "tree")

Budget = Union[int, float, str]

_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_BUDGET_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?\s*([A-Za-z]*)\s*$")


def parse_budget(budget: Budget, store_all_bytes: int) -> int:
    """A budget in bytes.

    Args:
        budget: an int (bytes); a string such as ``"2GiB"``, ``"512MB"``, ``"1.5 GB"``,
            ``"100kB"``, ``"123"`` (KiB/MiB/GiB/TiB binary, kB/MB/GB/TB decimal, case
            insensitive, spaces allowed); or a float in (0, 1]: that fraction of
            `store_all_bytes`.
        store_all_bytes: peak bytes of the store-all schedule (for fractions).

    Raises:
        TypeError: budget is not an int, float or str (bool is not a budget).
        ValueError: negative, NaN, unparseable, or a fraction outside (0, 1].
    """
    if isinstance(budget, bool):
        raise TypeError("budget must be int bytes, a size string or a fraction, not bool")
    if isinstance(budget, numbers.Integral):
        value = int(budget)
        if value < 0:
            raise ValueError(f"budget must be >= 0 bytes, got {value}")
        return value
    if isinstance(budget, numbers.Real):
        frac = float(budget)
        if not (math.isfinite(frac) and 0.0 < frac <= 1.0):
            raise ValueError(
                f"budget as a float is a fraction of the store-all peak and must be in (0, 1], "
                f"got {frac!r} (give bytes as an int or a string like '2GiB')"
            )
        return int(math.floor(frac * int(store_all_bytes)))
    if isinstance(budget, str):
        m = _BUDGET_RE.match(budget)
        unit = m.group(3).lower() if m else None
        if m is None or unit not in _UNITS:
            raise ValueError(
                f"budget string {budget!r} not understood; use e.g. '2GiB', '512MB', "
                "'1.5 GB', '100kB' or '123' (bytes)"
            )
        try:
            num = Decimal(m.group(1)) * (Decimal(10) ** int(m.group(2) or 0))
        except (InvalidOperation, ValueError) as exc:  # pragma: no cover - regex guards
            raise ValueError(f"budget string {budget!r} not understood") from exc
        return int(num * _UNITS[unit])
    raise TypeError(
        f"budget must be int bytes, a size string or a float fraction, not {type(budget).__name__}"
    )


def format_bytes(n: float) -> str:
    """Human-readable byte count (binary units)."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"  # pragma: no cover


@dataclass(frozen=True)
class Plan:
    """A checkpointing plan for a chain of stages.

    Attributes:
        tree: top-level plan nodes (`Keep`/`Region`, 0-based stages).
        planner: the planner that made it.
        num_stages: L.
        budget_bytes: the budget asked for (bytes).
        peak_bytes: peak bytes held, from the C simulator (exact bytes, not slots),
            each stage's backward working bytes included.
        total_cost: forward + recompute + backward cost (chain's units), simulated.
        recompute_cost: total_cost minus one forward and one backward of every stage.
        planned_cost: the DP's value (optimal) or the simulated cost (baselines).
        plan_time_s: seconds spent planning.
        slots: memory discretisation used by the optimal DP.
        chain: the StageChain planned (set by `plan`, None from `plan_chain`).
        held_peak_bytes: the peak of the held bytes alone (saved tensors, boundaries and
            kept outputs, no working bytes): what the runtime's accountant measures.
            -1 = the same as `peak_bytes` (a chain without working bytes).
    """

    tree: tuple[Node, ...]
    planner: str
    num_stages: int
    budget_bytes: int
    peak_bytes: int
    total_cost: float
    recompute_cost: float
    planned_cost: float
    plan_time_s: float
    slots: int
    chain: Any = None
    held_peak_bytes: int = -1

    def __post_init__(self) -> None:
        if self.held_peak_bytes < 0:
            object.__setattr__(self, "held_peak_bytes", int(self.peak_bytes))

    @property
    def predicted_peak_bytes(self) -> int:
        """Alias of `peak_bytes` (bytes)."""
        return self.peak_bytes

    def __str__(self) -> str:
        base = self.total_cost - self.recompute_cost
        pct = 100.0 * self.recompute_cost / base if base > 0 else 0.0
        header = (
            f"Plan[{self.planner}]: {self.num_stages} stages, budget "
            f"{format_bytes(self.budget_bytes)}, predicted peak {format_bytes(self.peak_bytes)}, "
            f"recompute cost {self.recompute_cost:.6g} (+{pct:.1f}%)"
        )
        body = format_tree(self.tree, indent=1)
        return header + ("\n" + body if body else "")


def decode_nodes(nodes: Sequence[tuple[int, ...]]) -> tuple[Node, ...]:
    """Preorder (kind, start, end[, option]) tuples (kind 0 Keep, 1 Region) into a plan
    tree."""
    pos = 0

    def seq(end: int) -> tuple[Node, ...]:
        nonlocal pos
        out: list[Node] = []
        covered = -1
        while pos < len(nodes) and covered < end:
            kind, s, e = nodes[pos][:3]
            opt = nodes[pos][3] if len(nodes[pos]) > 3 else -1
            if kind == 0:
                pos += 1
                out.append(Keep(s))
            else:
                pos += 1
                out.append(Region(s, e, seq(e), opt))
            covered = e
            if e >= end:
                break
        return tuple(out)

    if not nodes:
        return ()
    return seq(max(node[2] for node in nodes))


def encode_tree(tree: Sequence[Node]) -> list[tuple[int, ...]]:
    """A plan tree into preorder (kind, start, end) triples ((1, start, end, option)
    for a region with an option)."""
    out: list[tuple[int, ...]] = []

    def walk(nodes: Sequence[Node]) -> None:
        for n in nodes:
            if isinstance(n, Keep):
                out.append((0, n.stage, n.stage + 1))
            else:
                out.append((1, n.start, n.end) if n.option < 0
                           else (1, n.start, n.end, n.option))
                walk(n.children)

    walk(tree)
    return out


def store_all_bytes(input_bytes: Sequence[int], saved_bytes: Sequence[int]) -> int:
    """Peak bytes of the store-all schedule: x_0 + sum(g_i + x_{i+1}) + g_{L-1}."""
    n = len(input_bytes)
    return int(input_bytes[0]) + sum(int(saved_bytes[i]) for i in range(n)) + sum(
        int(input_bytes[i]) for i in range(1, n)
    )


def _check_lists(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    must_keep: Sequence[bool] | None,
) -> int:
    names = ("forward_cost", "backward_cost", "input_bytes", "saved_bytes")
    seqs = (forward_cost, backward_cost, input_bytes, saved_bytes)
    for name, s in zip(names, seqs):
        if isinstance(s, (str, bytes)) or not hasattr(s, "__len__"):
            raise TypeError(f"{name} must be a sequence, not {type(s).__name__}")
    n = len(forward_cost)
    if n == 0:
        raise ValueError("forward_cost: the chain is empty (need at least one stage)")
    for name, s in zip(names, seqs):
        if len(s) != n:
            raise ValueError(f"{name} has {len(s)} entries, forward_cost has {n}")
    if must_keep is not None and len(must_keep) != n:
        raise ValueError(f"must_keep has {len(must_keep)} entries, forward_cost has {n}")
    for name, s in zip(names[2:], seqs[2:]):
        for i, v in enumerate(s):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name}[{i}] must be an int (bytes), not {type(v).__name__}")
    return n


#: Slots of the optimal DP when none are asked: about this many (stages**2 x slots), the
#: DP's work growing with both, within [MIN_AUTO_SLOTS, MAX_AUTO_SLOTS].
AUTO_SLOTS_WORK = 2_000_000
MIN_AUTO_SLOTS = 512
MAX_AUTO_SLOTS = 8192


def auto_slots(num_stages: int) -> int:
    """Memory units for the optimal DP over `num_stages` stages: the largest power of two
    with ``num_stages**2 * slots <= AUTO_SLOTS_WORK``, clamped to [512, 8192].

    A unit is budget/slots bytes and the DP rounds every size up to units, so a plan
    that fits by less than a few units is missed at coarse units (HF Llama 6L at 0.286 of
    store-all: 512 slots missed the per-block plan, 8192 find it). Short chains get fine
    units cheaply; long ones stay fast (the DP's time grows about linearly in slots).
    """
    n = max(1, int(num_stages))
    s = MIN_AUTO_SLOTS
    while s < MAX_AUTO_SLOTS and n * n * s * 2 <= AUTO_SLOTS_WORK:
        s *= 2
    return s


def plan_chain(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    budget: Budget,
    *,
    planner: str = "optimal",
    slots: int | None = None,
    must_keep: Sequence[bool] | None = None,
    height: int | None = None,
    live_intervals: Sequence[tuple[int, int, int]] | None = None,
    transient: bool = False,
    options: Sequence[tuple] | None = None,
    working_bytes: Sequence[int] | None = None,
    cut_before: Sequence[bool] | None = None,
) -> Plan:
    """Plan a chain of stages under a memory budget.

    Args:
        forward_cost, backward_cost: per-stage costs (any unit, >= 0).
        input_bytes: x_i, bytes of stage i's boundary input (x_0 = the chain input).
        saved_bytes: g_i, bytes stage i saves for its backward.
        budget: bytes (int), a size string ("2GiB") or a fraction of the store-all peak.
        planner: one of PLANNERS.
        slots: memory units of the optimal DP (>= 1); more = finer, slower. The DP
            rounds every size up to a unit of budget/slots, so coarse units can miss a
            plan that fits by a few units. None = `auto_slots(len(forward_cost))`.
        must_keep: per stage, True = never inside a recompute region (bools only).
        height: tree height for planner="tree" (default ceil(log2 L)).
        live_intervals: DAG accounting (docs/theory.md §2): (j, u, bytes) for every
            value produced in stage j and last used by stage u > j (u <= L-1) that is
            not a chain input. A boundary then costs only the bytes new since the held
            one, d(s, k), instead of all of x_k; input_bytes[1:] are not used. None (or
            empty) = plain chain, d(s, k) = x_k.
        transient: also require that a recompute region fits its running boundaries
            (docs/theory.md §2, "transient term"); False = exactly the reference model.
            A bool.
        options: the two-level planner's level 1 (docs/theory.md): (stage, bytes, save)
            or (stage, bytes, save, overlap) per option of a stage, 0 <= save <=
            forward_cost[stage], 0 <= overlap <= bytes. A one-stage region at the top
            level may keep `bytes` more from its forward to its backward and recompute
            for `save` less; `overlap` of those bytes become the stage's saved tensors
            when it is recomputed (so they are not held twice then). The DP
            (planner="optimal") picks at most one option per such region, and
            `Region.option` says which (options numbered per stage in the order given).
        working_bytes: per stage, the bytes its backward needs beyond its saved bytes
            (the gradients in flight, bytes >= 0); None = 0. The plan's peak then
            includes them and `Plan.held_peak_bytes` is the peak without them.
        cut_before: per stage, True at k >= 1 = no region contains both stage k-1 and
            stage k (bools only; an input the runtime holds however a region runs).

    The lists are validated once into a `_C.Chain` shared by every C call; a long
    plan is interruptible with Ctrl-C (KeyboardInterrupt).

    Raises:
        TypeError / ValueError: bad arguments (the message names the argument).
        BudgetError: no plan of this planner fits; `.minimum_bytes` says what would.
    """
    from . import _C

    if not isinstance(planner, str) or planner not in PLANNERS:
        raise ValueError(f"planner must be one of {', '.join(PLANNERS)}; got {planner!r}")
    if slots is None:
        slots = auto_slots(len(forward_cost))
    if isinstance(slots, bool) or not isinstance(slots, numbers.Integral):
        raise TypeError(f"slots must be an int, not {type(slots).__name__}")
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    if height is not None:
        if isinstance(height, bool) or not isinstance(height, numbers.Integral):
            raise TypeError(f"height must be an int, not {type(height).__name__}")
        if height < 0:
            raise ValueError(f"height must be >= 0, got {height}")
    n = _check_lists(forward_cost, backward_cost, input_bytes, saved_bytes, must_keep)
    f = [float(v) for v in forward_cost] if _all_real(forward_cost, "forward_cost") else []
    b = [float(v) for v in backward_cost] if _all_real(backward_cost, "backward_cost") else []
    x = [int(v) for v in input_bytes]
    g = [int(v) for v in saved_bytes]
    mk = _check_flags(must_keep)
    cuts = _check_flags(cut_before, "cut_before", n)
    transient = _check_transient(transient)
    for name, vals in (("input_bytes", x), ("saved_bytes", g)):
        for i, v in enumerate(vals):
            if v < 0:
                raise ValueError(f"{name}[{i}] must be >= 0 bytes, got {v}")
    live = _check_live(live_intervals, n)
    work = _check_working(working_bytes, n)
    opts = None if not options else list(options)
    # One validated C chain, shared by every call below.
    chain = _C.Chain(f, b, x, g, must_keep=mk, live_intervals=live, options=opts,
                     working_bytes=work, cut_before=cuts)
    if live is None and work is None:
        store_all = store_all_bytes(x, g)
    else:
        store_all = _C.simulate(chain, [(0, i, i + 1) for i in range(n)])[1]
    budget_bytes = parse_budget(budget, store_all)

    t0 = time.perf_counter()
    # At or above the store-all peak the optimum is to keep everything (no recompute);
    # asking the store_all planner avoids rounding sizes up to slots.
    run_as = "store_all" if planner == "optimal" and budget_bytes >= store_all else planner
    res = _C.plan_chain(
        chain, budget_bytes, planner=run_as, slots=int(slots),
        height=-1 if height is None else int(height), transient=transient,
    )
    if planner == "optimal" and res is None:
        min_bytes, _, min_nodes = _C.min_budget(chain, transient=transient)
        if budget_bytes < min_bytes:
            raise BudgetError(
                f"no schedule fits in {budget_bytes} bytes ({format_bytes(budget_bytes)}); "
                f"the smallest feasible budget is {min_bytes} bytes ({format_bytes(min_bytes)})",
                minimum_bytes=min_bytes,
                budget_bytes=budget_bytes,
            )
        # Feasible in exact bytes but not after rounding sizes up to slots.
        cost, peak = _C.simulate(chain, min_nodes, transient=transient)
        res = (min_nodes, cost, cost, peak)
    nodes, planned, total, peak = res
    elapsed = time.perf_counter() - t0
    if peak > budget_bytes:
        raise BudgetError(
            f"the {planner!r} plan peaks at {peak} bytes ({format_bytes(peak)}), over the "
            f"budget of {budget_bytes} bytes ({format_bytes(budget_bytes)})",
            minimum_bytes=peak,
            budget_bytes=budget_bytes,
        )
    held = -1
    if work is not None:
        held = _C.simulate(_C.Chain(f, b, x, g, must_keep=mk, live_intervals=live,
                                    options=opts, cut_before=cuts), nodes,
                           transient=transient)[1]
    base = math.fsum(f) + math.fsum(b)
    recompute = total - base
    if abs(recompute) <= 1e-12 * max(1.0, abs(total)):
        recompute = 0.0
    return Plan(
        tree=decode_nodes(nodes),
        planner=planner,
        num_stages=n,
        budget_bytes=budget_bytes,
        peak_bytes=int(peak),
        total_cost=float(total),
        recompute_cost=float(recompute),
        planned_cost=float(planned),
        plan_time_s=elapsed,
        slots=int(slots),
        held_peak_bytes=int(held),
    )


def _check_working(working_bytes: Sequence[int] | None, n: int) -> list[int] | None:
    """Validated copy of working_bytes (None when absent or all zero)."""
    if working_bytes is None:
        return None
    if isinstance(working_bytes, (str, bytes)) or not hasattr(working_bytes, "__len__"):
        raise TypeError(f"working_bytes must be a sequence of ints (bytes), not "
                        f"{type(working_bytes).__name__}")
    if len(working_bytes) != n:
        raise ValueError(f"working_bytes has {len(working_bytes)} entries, forward_cost has {n}")
    out: list[int] = []
    for i, v in enumerate(working_bytes):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral):
            raise TypeError(f"working_bytes[{i}] must be an int (bytes), not {type(v).__name__}")
        if v < 0:
            raise ValueError(f"working_bytes[{i}] must be >= 0 bytes, got {v}")
        out.append(int(v))
    return out if any(out) else None


def _check_live(
    live_intervals: Sequence[tuple[int, int, int]] | None, n: int
) -> list[tuple[int, int, int]] | None:
    """Validated copy of live_intervals (None when absent or empty)."""
    if live_intervals is None:
        return None
    if isinstance(live_intervals, (str, bytes)) or not hasattr(live_intervals, "__iter__"):
        raise TypeError(
            f"live_intervals must be a sequence of (j, u, bytes), not {type(live_intervals).__name__}"
        )
    out: list[tuple[int, int, int]] = []
    for i, item in enumerate(live_intervals):
        if not isinstance(item, tuple) or len(item) != 3:
            raise TypeError(f"live_intervals[{i}] must be a (j, u, bytes) tuple, got {item!r}")
        for v in item:
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"live_intervals[{i}] must hold ints, got {item!r}")
        j, u, nbytes = (int(v) for v in item)
        if not 0 <= j < u < n:
            raise ValueError(f"live_intervals[{i}]: need 0 <= j < u < {n} (stages), got {item!r}")
        if nbytes < 0:
            raise ValueError(f"live_intervals[{i}]: bytes must be >= 0, got {nbytes}")
        out.append((j, u, nbytes))
    return out or None


def _check_flags(flags: Sequence[bool] | None, name: str = "must_keep",
                 n: int | None = None) -> list[bool] | None:
    """Per-stage flags as a list of bools (None stays None); TypeError for a non-bool
    entry, ValueError for a length other than `n` (when given).

    Only real bools (and numpy bools) count: 0/1, "yes" or None are a caller's mistake,
    not a flag.
    """
    if flags is None:
        return None
    if isinstance(flags, (str, bytes)) or not hasattr(flags, "__iter__"):
        raise TypeError(f"{name} must be a sequence of bools, not {type(flags).__name__}")
    out: list[bool] = []
    for i, v in enumerate(flags):
        if not isinstance(v, bool) and getattr(getattr(v, "dtype", None), "kind", None) != "b":
            raise TypeError(f"{name}[{i}] must be a bool, not {type(v).__name__}")
        out.append(bool(v))
    if n is not None and len(out) != n:
        raise ValueError(f"{name} has {len(out)} entries, forward_cost has {n}")
    return out


def _check_transient(transient: bool) -> bool:
    if not isinstance(transient, bool):
        raise TypeError(f"transient must be a bool, not {type(transient).__name__}")
    return transient


def _all_real(values: Sequence[Any], name: str) -> bool:
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            raise TypeError(f"{name}[{i}] must be a number, not {type(v).__name__}")
        fv = float(v)
        if not math.isfinite(fv) or fv < 0:
            raise ValueError(f"{name}[{i}] must be finite and >= 0, got {v!r}")
    return True


def simulate_tree(
    forward_cost: Sequence[float],
    backward_cost: Sequence[float],
    input_bytes: Sequence[int],
    saved_bytes: Sequence[int],
    tree: Sequence[Node],
    must_keep: Sequence[bool] | None = None,
    live_intervals: Sequence[tuple[int, int, int]] | None = None,
    transient: bool = False,
    working_bytes: Sequence[int] | None = None,
    cut_before: Sequence[bool] | None = None,
) -> tuple[float, int]:
    """Replay any plan tree with the C simulator: (total cost, peak bytes; each stage's
    backward adds its `working_bytes`)."""
    from . import _C

    chain = _C.Chain(
        [float(v) for v in forward_cost], [float(v) for v in backward_cost],
        [int(v) for v in input_bytes], [int(v) for v in saved_bytes],
        must_keep=_check_flags(must_keep),
        live_intervals=_check_live(live_intervals, len(forward_cost)),
        working_bytes=_check_working(working_bytes, len(forward_cost)),
        cut_before=_check_flags(cut_before, "cut_before", len(forward_cost)),
    )
    return _C.simulate(chain, encode_tree(tree), transient=_check_transient(transient))


def plan(
    graph_ir: Any,
    budget: Budget,
    planner: str = "optimal",
    *,
    slots: int | None = None,
    max_stages: int | None = None,
) -> Plan:
    """Plan a captured graph: coarsen it into a stage chain, then `plan_chain`.

    The returned Plan carries `.chain` (the StageChain). Stages marked
    ``never_recompute`` by the chain are never put inside a recompute region. Graph
    plans count a region's running boundaries (``transient=True`` of `plan_chain`),
    since the runtime really holds them while the region runs.
    """
    sc = _chain.stage_chain(graph_ir, max_stages)
    mk = sc.never_recompute
    p = plan_chain(
        sc.forward_cost, sc.backward_cost, sc.input_bytes, sc.saved_bytes, budget,
        planner=planner, slots=slots, must_keep=mk, live_intervals=sc.live_intervals,
        transient=True,
    )
    return replace(p, chain=sc)
