"""Module-level capture for models no graph capture can handle: repeated blocks.

`find_blocks` picks the model's repeated blocks (the children of one nn.ModuleList or
nn.Sequential, e.g. ``model.blocks``, ``model.layers``, Hugging Face's
``model.model.layers`` / ``transformer.h``); `profile_blocks` runs the model once to
measure, per block call, its time, its boundary bytes and the bytes it saves for
backward. The chain it describes is ``[pre] + blocks + [post]``: ``pre`` is the code
before the first block (and between blocks), ``post`` the code after the last one;
both are always kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils import _pytree as pytree

from ..errors import CaptureError
from .state import preserved_model_state

#: Examples named in error messages (where repeated blocks usually live).
LOOKED_FOR = "model.blocks, model.layers, model.model.layers, transformer.h"


@dataclass(frozen=True)
class BlockProfile:
    """Measured chain of a per-block plan: stage 0 = pre, 1..L = blocks, L+1 = post.

    Attributes:
        container: qualified name of the nn.ModuleList/nn.Sequential holding the blocks.
        blocks: the block modules in call order (``len(blocks) == L``).
        names: their qualified names, in call order.
        forward_cost: per stage, measured forward time (microseconds).
        backward_cost: per stage, 2x forward_cost (microseconds).
        input_bytes: per stage, bytes of its tensor inputs (x_i; storages counted once,
            parameters and buffers excluded).
        saved_bytes: per stage, bytes it saves for backward besides its boundaries
            (g_i); saves made between blocks are charged to ``pre``; a block that
            writes an input in place is charged twice its input bytes (the copies a
            recompute region holds and re-makes).
        must_keep: per stage, True for pre and post (never recomputed).
        mutating: indices (0-based over blocks) of blocks that write one of their
            tensor inputs in place (their inputs are held as copies).
    """

    container: str
    blocks: list[nn.Module]
    names: list[str]
    forward_cost: list[float]
    backward_cost: list[float]
    input_bytes: list[int]
    saved_bytes: list[int]
    must_keep: list[bool]
    mutating: frozenset[int]

    @property
    def never_recompute(self) -> list[bool]:
        return self.must_keep


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def find_blocks(model: nn.Module) -> tuple[str, list[str], list[nn.Module]]:
    """The model's repeated blocks: (container's qualified name, the blocks' qualified
    names, the blocks).

    Among every nn.ModuleList / nn.Sequential with at least two children, the one whose
    children hold the most parameters wins (ties: more children, then the shallower).

    Raises:
        CaptureError: no such container; the message says what was looked for.
    """
    best: tuple[tuple[int, int, int], str, list[tuple[str, nn.Module]]] | None = None
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) < 2:
            continue
        children = list(m.named_children())
        score = (sum(_n_params(c) for _, c in children), len(children), -name.count("."))
        if best is None or score > best[0]:
            best = (score, name, children)
    if best is None:
        raise CaptureError(
            f"fallback='per_block' found no repeated blocks in {type(model).__name__}: it "
            "looks for an nn.ModuleList or nn.Sequential with at least 2 submodules (such "
            f"as {LOOKED_FOR}) and plans over their calls. Put the model's repeated "
            "blocks in an nn.ModuleList, or make the model capturable as a graph "
            "(see the capture errors above)")
    prefix = f"{best[1]}." if best[1] else ""
    return best[1], [prefix + c for c, _ in best[2]], [m for _, m in best[2]]


@contextmanager
def patched_forwards(
    blocks: Sequence[nn.Module],
    wrap: Callable[[int, Callable[..., Any]], Callable[..., Any]],
) -> Iterator[list[Callable[..., Any]]]:
    """Replace each block's ``forward`` by ``wrap(index, original forward)`` while inside.

    Yields the original forwards (index = position in `blocks`). The instance attribute
    is removed (or an existing one restored) on exit, even on error.
    """
    originals = [b.forward for b in blocks]
    had = [b.__dict__.get("forward") for b in blocks]
    try:
        for i, b in enumerate(blocks):
            b.forward = wrap(i, originals[i])  # type: ignore[method-assign]
        yield originals
    finally:
        for b, old in zip(blocks, had):
            if old is None:
                b.__dict__.pop("forward", None)
            else:
                b.forward = old  # type: ignore[method-assign]


def tensor_leaves(tree: Any) -> list[torch.Tensor]:
    """Tensor leaves of a pytree (args, kwargs, outputs)."""
    return [v for v in pytree.tree_leaves(tree) if isinstance(v, torch.Tensor)]


def _storages(tensors: Sequence[torch.Tensor], skip: set[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for t in tensors:
        if t.is_meta:
            continue
        s = t.untyped_storage()
        if s.data_ptr() and s.data_ptr() not in skip:
            out[s.data_ptr()] = s.nbytes()
    return out


def _sync(tensors: Sequence[torch.Tensor]) -> None:
    if any(t.is_cuda for t in tensors):
        torch.cuda.synchronize()


class _Recorder:
    """Hooks of the profiled run: which segment is running, what it saves, how long."""

    def __init__(self, blocks: Sequence[nn.Module], state: set[int]) -> None:
        self.index = {id(b): i for i, b in enumerate(blocks)}
        self.state = state  # storages of parameters and buffers
        self.order: list[int] = []  # block indices in call order
        self.inputs: list[dict[int, int]] = []
        self.outputs: list[dict[int, int]] = []
        self.times: list[float] = []
        self.mutating: set[int] = set()
        self.segment: tuple[str, int] = ("out", 0)  # ("in", call k) or ("out", k done)
        self.saves: list[tuple[tuple[str, int], int, int]] = []  # (segment, ptr, bytes)
        self.marks: list[float] = []  # perf_counter at each block start and end

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if not t.is_meta:
            s = t.untyped_storage()
            if s.data_ptr() and s.data_ptr() not in self.state:
                self.saves.append((self.segment, s.data_ptr(), s.nbytes()))
        return t

    def wrap(self, i: int, forward: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            if i in self.order:
                raise CaptureError(
                    f"fallback='per_block': block {i} ran twice in one forward; the "
                    "fallback needs each repeated block called exactly once per forward")
            ins = tensor_leaves((args, kwargs))
            versions = [t._version for t in ins]
            k = len(self.order)
            self.order.append(i)
            self.inputs.append(_storages(ins, self.state))
            self.segment = ("in", k)
            _sync(ins)
            t0 = time.perf_counter()
            out = forward(*args, **kwargs)
            outs = tensor_leaves(out)
            _sync(outs)
            self.times.append(time.perf_counter() - t0)
            self.marks += [t0, t0 + self.times[-1]]
            if any(t._version != v for t, v in zip(ins, versions)):
                self.mutating.add(i)
            self.outputs.append(_storages(outs, self.state))
            self.segment = ("out", k + 1)
            return out

        return run


def profile_blocks(model: nn.Module, args: tuple, kwargs: dict,
                   container: str, names: Sequence[str],
                   blocks: Sequence[nn.Module]) -> BlockProfile:
    """Run ``model(*args, **kwargs)`` once with grad and measure the per-block chain.

    The model's state (train flags, buffers such as BatchNorm running stats, parameters,
    RNG) is restored afterwards.

    Raises:
        CaptureError: a block ran twice, or none ran.
    """
    state: set[int] = set(_storages([*model.parameters(), *model.buffers()], set()))
    rec = _Recorder(blocks, state)
    ins = tensor_leaves((args, kwargs))
    with preserved_model_state(model), torch.enable_grad():
        with patched_forwards(blocks, rec.wrap), saved_tensors_hooks(rec.pack, lambda t: t):
            _sync(ins)
            start = time.perf_counter()
            out = model(*args, **kwargs)
            _sync(tensor_leaves(out))
            end = time.perf_counter()
        del out
    n = len(rec.order)
    if n == 0:
        raise CaptureError(
            f"fallback='per_block': none of the {len(blocks)} blocks of "
            f"{container or type(model).__name__} ran in the model's forward")
    if n != len(blocks):
        missing = sorted(set(range(len(blocks))) - set(rec.order))
        raise CaptureError(
            f"fallback='per_block': blocks {missing} of {container} did not run in the "
            "model's forward; the fallback needs each repeated block called exactly once")
    # between-block time is charged to pre, like between-block saves
    inside = sum(rec.times)
    post = end - rec.marks[-1]
    pre = max(0.0, (end - start) - inside - post)
    times = [pre, *rec.times, post]
    boundary = {p for d in rec.inputs + rec.outputs for p in d}
    saved = [0] * (n + 2)
    seen: set[int] = set()
    for (kind, k), ptr, nbytes in rec.saves:
        if kind == "in":
            if ptr in rec.inputs[k] or ptr in rec.outputs[k] or ptr in seen:
                continue
            stage = k + 1
        else:
            if ptr in boundary or ptr in seen:
                continue
            stage = n + 1 if k == n else 0
        seen.add(ptr)
        saved[stage] += nbytes
    x = [sum(_storages(ins, state).values())] + [sum(d.values()) for d in rec.inputs]
    for k, i in enumerate(rec.order):
        if i in rec.mutating:  # a region holds a copy of its inputs, plus a fresh one on recompute
            saved[k + 1] += 2 * x[k + 1]
    x.append(sum(rec.outputs[-1].values()))
    fwd = [t * 1e6 for t in times]
    return BlockProfile(
        container=container,
        blocks=[blocks[i] for i in rec.order],
        names=[names[i] for i in rec.order],
        forward_cost=fwd,
        backward_cost=[2.0 * f for f in fwd],
        input_bytes=x,
        saved_bytes=saved,
        must_keep=[True] + [False] * n + [True],
        mutating=frozenset(rec.order.index(i) for i in rec.mutating),
    )
