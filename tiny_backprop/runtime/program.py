"""Compile a plan tree over stage node lists into executable steps.

A step is either a KeepStep (consecutive kept stages merged into one Unit) or a
RegionStep (a recompute region: one Unit for its whole forward plus the compiled
children used when it is recomputed). Each step carries the names of the values whose
last reader it is, so the interpreter can free them right after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Union

import torch
import torch.fx

from ..tree import Keep, Region
from .split import Unit, build_unit

_FREE_OPS = ("placeholder", "get_attr", "output")


@dataclass
class KeepStep:
    """Kept stages first..last (inclusive) run as one unit."""

    first: int
    last: int
    unit: Unit
    drop_after: list[str] = field(default_factory=list)


@dataclass
class RegionStep:
    """A recompute region over stages first..last (inclusive)."""

    first: int
    last: int
    unit: Unit  # the whole region, for its original forward
    children: list[Step]
    drop_after: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> list[str]:
        return self.unit.inputs

    @property
    def mutated_inputs(self) -> set[str]:
        return self.unit.mutated_inputs

    @property
    def norm_modules(self) -> list[torch.nn.Module]:
        return self.unit.norm_modules


Step = Union[KeepStep, RegionStep]


@dataclass
class Program:
    """Executable form of a plan: top-level steps plus where values are last read."""

    steps: list[Step]
    n_stages: int
    free_drop: list[str]  # free values (inputs, params) never read by any stage


class _Compiler:
    def __init__(self, gm: torch.fx.GraphModule, stages: Sequence[Sequence[torch.fx.Node]],
                 never_recompute: Sequence[bool] | None) -> None:
        self.gm = gm
        self.stages = stages
        self.never = list(never_recompute) if never_recompute is not None else []
        self.stage_of: dict[str, int] = {}
        for s, nodes in enumerate(stages):
            for n in nodes:
                if n.op not in _FREE_OPS:
                    self.stage_of[n.name] = s
        big = len(stages)
        # last stage reading each value (len(stages) = read by the graph output)
        self.last_read: dict[str, int] = {}
        for node in gm.graph.nodes:
            reader = big if node.op == "output" else self.stage_of.get(node.name)
            if reader is None:
                continue
            for src in node.all_input_nodes:
                self.last_read[src.name] = max(self.last_read.get(src.name, -1), reader)

    def used_after(self, last_stage: int) -> set[str]:
        return {n for n, r in self.last_read.items() if r > last_stage}

    def dropped_in(self, first: int, last: int) -> list[str]:
        return [n for n, r in self.last_read.items() if first <= r <= last]

    def nodes(self, first: int, last: int) -> list[torch.fx.Node]:
        return [n for s in range(first, last + 1) for n in self.stages[s]]

    def keep(self, first: int, last: int) -> KeepStep:
        unit = build_unit(self.gm, self.nodes(first, last), self.used_after(last))
        return KeepStep(first, last, unit, self.dropped_in(first, last))

    def compile(self, tree: Sequence[Keep | Region], expect_first: int) -> list[Step]:
        steps: list[Step] = []
        run: list[int] = []
        pos = expect_first

        def flush() -> None:
            if run:
                steps.append(self.keep(run[0], run[-1]))
                run.clear()

        for node in tree:
            if isinstance(node, Keep):
                if node.stage != pos:
                    raise ValueError(f"plan tree: expected stage {pos}, found Keep({node.stage})")
                run.append(node.stage)
                pos += 1
            elif isinstance(node, Region):
                if node.start != pos or node.end <= node.start:
                    raise ValueError(
                        f"plan tree: expected a region starting at stage {pos}, found "
                        f"Region({node.start}, {node.end})")
                bad = [s for s in range(node.start, node.end)
                       if s < len(self.never) and self.never[s]]
                if bad:
                    raise ValueError(f"plan tree puts never-recompute stages {bad} in "
                                     f"Region({node.start}, {node.end})")
                flush()
                children = self.compile(node.children, node.start)
                covered = max(c.last for c in children) + 1 if children else node.start
                if covered != node.end:
                    raise ValueError(f"Region({node.start}, {node.end}): children cover "
                                     f"stages {node.start}..{covered - 1}")
                last = node.end - 1
                unit = build_unit(self.gm, self.nodes(node.start, last), self.used_after(last))
                steps.append(RegionStep(node.start, last, unit, children,
                                        self.dropped_in(node.start, last)))
                pos = node.end
            else:
                raise TypeError(f"plan tree: expected Keep or Region, got {type(node).__name__}")
        flush()
        return steps


def compile_program(gm: torch.fx.GraphModule, stages: Sequence[Sequence[torch.fx.Node]],
                    tree: Sequence[Keep | Region],
                    never_recompute: Sequence[bool] | None = None) -> Program:
    """Compile `tree` (0-based stage indices covering every stage once, in order)."""
    comp = _Compiler(gm, stages, never_recompute)
    steps = comp.compile(tree, 0)
    covered = max((s.last for s in steps), default=-1) + 1
    if covered != len(stages):
        raise ValueError(f"plan tree covers stages 0..{covered - 1} of {len(stages)}")
    free = [n.name for n in gm.graph.nodes
            if n.op in ("placeholder", "get_attr") and n.name not in comp.last_read]
    return Program(steps, len(stages), free)
