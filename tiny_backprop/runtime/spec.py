"""What the runtime applies: recompute regions at module calls, nested, with op keep-sets.

A region is identified by module calls, never by graph nodes: ``CallRef(path,
occurrence)`` is the ``occurrence``-th call of the module named ``path`` within the
region's scope. The scope of a top-level region is the whole forward; the scope of a
nested region is its parent's calls (occurrences counted from the parent's first call,
over the calls that run inside the parent's calls).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CallRef:
    """The `occurrence`-th call (0-based) of the module `path` within a scope."""

    path: str
    occurrence: int = 0


@dataclass(frozen=True)
class RegionSpec:
    """A recompute region: consecutive module calls that keep only their inputs.

    Attributes:
        calls: the calls it spans, in order (one module call, or a run of sibling calls
            such as consecutive blocks of an nn.ModuleList); code between them runs
            outside the region.
        children: nested regions, their calls counted within this region's scope.
        keep_ops: (aten op name, occurrence within the region) of ops whose outputs are
            kept in forward and reused when the region is recomputed.
        mutating: per call, True if it writes one of its tensor inputs in place (the
            region then holds a copy of that call's inputs).
        expected_packs: saved tensors its calls pack, per the trace (None: unknown);
            a different count at run time marks the plan stale.
    """

    calls: tuple[CallRef, ...]
    children: tuple[RegionSpec, ...] = ()
    keep_ops: frozenset[tuple[str, int]] = frozenset()
    mutating: tuple[bool, ...] = ()
    expected_packs: int | None = None

    def __post_init__(self) -> None:
        if not self.calls:
            raise ValueError("RegionSpec.calls must name at least one module call")
        if self.mutating and len(self.mutating) != len(self.calls):
            raise ValueError(f"RegionSpec.mutating has {len(self.mutating)} entries, "
                             f"calls has {len(self.calls)}")

    def label(self) -> str:
        """Readable name: ``path#occ`` or ``first#occ..last#occ``."""
        a, b = self.calls[0], self.calls[-1]
        first = f"{a.path or '<model>'}#{a.occurrence}"
        return first if len(self.calls) == 1 else f"{first}..{b.path}#{b.occurrence}"


@dataclass(frozen=True)
class RuntimePlan:
    """The top-level regions of one forward (empty: the plain forward)."""

    regions: tuple[RegionSpec, ...] = ()

    def paths(self) -> frozenset[str]:
        """Every module path a region of the plan (at any depth) starts or spans."""
        out: set[str] = set()

        def walk(specs: tuple[RegionSpec, ...]) -> None:
            for s in specs:
                out.update(c.path for c in s.calls)
                walk(s.children)

        walk(self.regions)
        return frozenset(out)

    def __bool__(self) -> bool:
        return bool(self.regions)
