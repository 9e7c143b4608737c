"""Plan trees: nested recompute regions over a chain of stages (0-based indices)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class Keep:
    """Run stage `stage` with grad and keep what its backward needs."""

    stage: int


@dataclass(frozen=True)
class Region:
    """Stages start..end-1 run without saving; only the region's input is held.

    On backward the region re-runs its forward, applying `children` (Keep or Region)
    in order; the children cover start..end-1 exactly. `option` >= 0 (a one-stage
    region at the top level only): the region keeps that option of its stage (chosen
    op outputs held from its forward to its backward, `plan_chain(options=...)`).
    """

    start: int
    end: int
    children: tuple[Union[Keep, Region], ...]
    option: int = -1


Node = Union[Keep, Region]


def tree_stages(nodes: tuple[Node, ...] | list[Node]) -> list[int]:
    """The stages covered by a sequence of plan nodes, in order."""
    out: list[int] = []
    for n in nodes:
        if isinstance(n, Keep):
            out.append(n.stage)
        else:
            out.extend(tree_stages(n.children))
    return out


def format_tree(nodes: tuple[Node, ...] | list[Node], indent: int = 0) -> str:
    """Draw a plan tree, one line per node."""
    lines: list[str] = []
    pad = "  " * indent
    for n in nodes:
        if isinstance(n, Keep):
            lines.append(f"{pad}Keep({n.stage})")
        else:
            opt = f", option={n.option}" if n.option >= 0 else ""
            lines.append(f"{pad}Region({n.start}, {n.end}{opt})")
            if n.children:
                lines.append(format_tree(n.children, indent + 1))
    return "\n".join(lines)
