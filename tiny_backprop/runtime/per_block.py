"""Execute a plan over whole block calls (the ``fallback="per_block"`` runtime).

The model's own forward runs unchanged, except that each block's ``forward`` is
wrapped for the duration of the call. A top-level Region over blocks s..e starts a
`BlockFrame` when block s is called; every call of a block of the region runs under
the frame's dropping pack hook, and the code between blocks runs under the ordinary
(keeping) hooks. The frame holds, per block call, the inputs it cannot rebuild:
tensors that are not the previous block's output (the region's input, masks, skip
connections), plus the call's RNG and autocast state. On backward it re-runs the
blocks' original forwards in order, chaining outputs into inputs, with the
machinery of `regions.RegionFrame` (handles, kept/nested children, BatchNorm stats
restored, RNG forked).

Python side effects inside a recomputed block (appending to a list) happen again
during backward, as with torch's checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Union

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils import _pytree as pytree

from ..capture.blocks import patched_forwards
from ..tree import Keep, Node, Region
from .accounting import Tracker
from .regions import Recorder, RegionFrame, _autocast_state, _never_unpack, _unpack_handle

Forward = Callable[..., Any]
# output leaves of the previous block with their version when it returned
Prev = list[tuple[object, int]]


@dataclass
class BlockRegion:
    """A recompute region over blocks first..last (0-based over blocks, inclusive)."""

    first: int
    last: int
    children: list[Union[int, BlockRegion]]  # an int is a kept block
    norm_modules: list[nn.Module]  # submodules with buffers (restored after recompute)
    mutating: frozenset[int] = frozenset()  # blocks writing an input in place
    stat_inputs: set[str] = field(default_factory=set)  # (none: stats live in modules)

    @property
    def mutated_inputs(self) -> _HeldOf:
        """Held input names ("block.leaf") of the blocks that write an input in place."""
        return _HeldOf(self.mutating)


class _HeldOf:
    """Membership test of held input names "i.k" by block index i."""

    def __init__(self, blocks: frozenset[int]) -> None:
        self.blocks = blocks

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and int(name.split(".")[0]) in self.blocks


def compile_blocks(tree: Sequence[Node], blocks: Sequence[nn.Module], offset: int = 1,
                   mutating: frozenset[int] = frozenset()) -> list[Union[int, BlockRegion]]:
    """The plan tree over chain stages as kept block indices and BlockRegions.

    Stage ``s`` is block ``s - offset``; stages outside the blocks (pre, post) must be
    Keep nodes and are left out.
    """
    out: list[Union[int, BlockRegion]] = []
    for node in tree:
        if isinstance(node, Keep):
            if 0 <= node.stage - offset < len(blocks):
                out.append(node.stage - offset)
        elif isinstance(node, Region):
            first, last = node.start - offset, node.end - 1 - offset
            if first < 0 or last >= len(blocks):
                raise ValueError(f"plan tree: Region({node.start}, {node.end}) covers a "
                                 "stage outside the blocks")
            mods = [m for b in blocks[first:last + 1] for m in b.modules()
                    if next(m.buffers(recurse=False), None) is not None]
            children = compile_blocks(node.children, blocks, offset, mutating)
            out.append(BlockRegion(first, last, children, mods, mutating))
        else:
            raise TypeError(f"plan tree: expected Keep or Region, got {type(node).__name__}")
    return out


def _with_versions(out: Any) -> Prev:
    return [(v, v._version if isinstance(v, torch.Tensor) else 0)
            for v in pytree.tree_leaves(out)]


@dataclass
class _Call:
    """How to replay one block call: its arguments and RNG/autocast state."""

    leaves: list[tuple[str, Any]]  # ("in", held name) | ("chain", j) | ("const", value)
    spec: Any
    cpu_rng: torch.Tensor
    cuda_rng: list[tuple[int, torch.Tensor]]
    autocast: list[tuple[str, bool, torch.dtype]]
    cache_enabled: bool


class BlockFrame(RegionFrame):
    """One execution of a BlockRegion: held block inputs, recomputed on first unpack.

    Args:
        step: the region.
        tracker: memory accountant bridge.
        forwards: the blocks' original forwards (index = block index).
    """

    def __init__(self, step: BlockRegion, tracker: Tracker, forwards: Sequence[Forward]) -> None:
        self._start(step, tracker)
        self.forwards = forwards
        self.calls: dict[int, _Call] = {}

    def add_call(self, i: int, args: tuple, kwargs: dict, prev: Prev | None) -> None:
        """Record the call of block `i` about to run now (`prev`: block i-1's output)."""
        leaves, spec = pytree.tree_flatten((args, kwargs))
        chained = {id(v): (j, ver) for j, (v, ver) in enumerate(prev or [])
                   if isinstance(v, torch.Tensor)}
        enc: list[tuple[str, Any]] = []
        devices: set[int] = set()
        for k, v in enumerate(leaves):
            if not isinstance(v, torch.Tensor):
                enc.append(("const", v))
                continue
            if v.is_cuda:
                devices.add(v.get_device())
            hit = chained.get(id(v))
            if hit is not None and hit[1] == v._version:
                enc.append(("chain", hit[0]))
                continue
            name = f"{i}.{k}"
            self.hold_input(name, v, mutated=i in self.step.mutating,
                            state=self.tracker.is_excluded(v))
            enc.append(("in", name))
        if not self.calls:
            self.snapshot()
        self.calls[i] = _Call(
            enc, spec, torch.get_rng_state(),
            [(d, torch.cuda.get_rng_state(d)) for d in sorted(devices)],
            _autocast_state(), torch.is_autocast_cache_enabled())

    def run_block(self, forward: Forward, args: tuple, kwargs: dict) -> Any:
        """The original forward of a block of this region, keeping no saved tensors."""
        with saved_tensors_hooks(self._pack_drop, _unpack_handle):
            return forward(*args, **kwargs)

    def _call(self, i: int, env: dict[str, object], prev: Prev | None,
              sub: BlockFrame | None) -> Prev:
        c = self.calls[i]
        values = [env[x] if kind == "in" else prev[x][0] if kind == "chain" else x  # type: ignore[index]
                  for kind, x in c.leaves]
        args, kwargs = pytree.tree_unflatten(values, c.spec)
        torch.set_rng_state(c.cpu_rng)
        for d, s in c.cuda_rng:
            torch.cuda.set_rng_state(s, d)
        with ExitStack() as stack:
            for dev, enabled, dtype in c.autocast:
                stack.enter_context(torch.autocast(dev, dtype=dtype, enabled=enabled,
                                                   cache_enabled=c.cache_enabled))
            if sub is not None:
                sub.add_call(i, args, kwargs, prev if i > sub.step.first else None)
            return _with_versions(self.forwards[i](*args, **kwargs))

    def _rerun(self, rec: Recorder) -> None:
        env = self._input_env()
        prev: Prev | None = None
        try:
            for child in self.step.children:
                if isinstance(child, int):
                    with saved_tensors_hooks(rec.store, _never_unpack):
                        prev = self._call(child, env, prev, None)
                    continue
                start = rec.counter
                sub = BlockFrame(child, self.tracker, self.forwards)
                with saved_tensors_hooks(rec.skip, _never_unpack):
                    for i in range(child.first, child.last + 1):
                        prev = self._call(i, env, prev, sub)
                rec.add_sub(start, sub)
        finally:
            env.clear_all()


class _Run:
    """Per-forward state: which block comes next, the open frame, the last output."""

    def __init__(self) -> None:
        self.next = 0
        self.frame: BlockFrame | None = None
        self.prev: Prev | None = None


class BlockExecutor:
    """Runs ``model(*args, **kwargs)`` with recompute regions around block calls.

    Args:
        model: the user's model (called as is).
        blocks: the blocks in call order (block i = chain stage i + 1).
        tree: plan tree over the chain ``[pre] + blocks + [post]``.
        tracker: memory accountant bridge.
        mutating: indices of blocks that write an input in place.
    """

    def __init__(self, model: nn.Module, blocks: Sequence[nn.Module], tree: Sequence[Node],
                 tracker: Tracker, mutating: frozenset[int] = frozenset()) -> None:
        self.model = model
        self.blocks = list(blocks)
        self.tracker = tracker
        self.steps = compile_blocks(tree, self.blocks, mutating=mutating)
        self.region_of: dict[int, BlockRegion] = {}
        for s in self.steps:
            if isinstance(s, BlockRegion):
                for i in range(s.first, s.last + 1):
                    self.region_of[i] = s
        self.refresh_exclusions()

    def refresh_exclusions(self) -> None:
        """Re-read which storages are parameters/buffers (not counted as activations)."""
        self.tracker.exclude([*self.model.parameters(), *self.model.buffers()])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the model's forward under the plan."""
        run = _Run()
        forwards: list[Forward] = []

        def wrap(i: int, forward: Forward) -> Forward:
            def call(*a: Any, **k: Any) -> Any:
                return self._block(run, forwards, i, a, k)
            return call

        tracker = self.tracker
        with patched_forwards(self.blocks, wrap) as originals:
            forwards.extend(originals)
            with saved_tensors_hooks(tracker.pack, tracker.unpack):
                out = self.model(*args, **kwargs)
        if run.next != len(self.blocks):
            raise RuntimeError(
                f"tiny_backprop per_block: {run.next} of {len(self.blocks)} blocks ran in "
                "this forward; the fallback needs every block called once per forward, as "
                "in the profiled first call")
        return out

    def _block(self, run: _Run, forwards: list[Forward], i: int, args: tuple,
               kwargs: dict) -> Any:
        if i != run.next:
            raise RuntimeError(
                f"tiny_backprop per_block: block {i} was called where block {run.next} was "
                "expected; the fallback needs the blocks called once per forward in the "
                "order of the profiled first call")
        run.next += 1
        region = self.region_of.get(i)
        if region is None:
            return forwards[i](*args, **kwargs)
        if i == region.first:
            run.frame, run.prev = BlockFrame(region, self.tracker, forwards), None
        frame = run.frame
        assert frame is not None
        frame.add_call(i, args, kwargs, run.prev)
        out = frame.run_block(forwards[i], args, kwargs)
        if i == region.last:
            run.frame, run.prev = None, None
        else:
            run.prev = _with_versions(out)
        return out
