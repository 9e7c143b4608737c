"""Test helpers of the runtime: a minimal symbolic_trace capture, even stage bounds,
and reference runs of the plain model. (The real capture/plan APIs replace the
capture here once they land; the executor only needs the Captured contract.)"""

from __future__ import annotations

import copy
import inspect
from types import SimpleNamespace
from typing import Any

import torch
import torch.fx


def fx_capture(model: torch.nn.Module) -> Any:
    """A Captured-like object from torch.fx.symbolic_trace (tensor-only arguments)."""
    gm = torch.fx.symbolic_trace(model)
    sig = inspect.signature(model.forward)
    names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]

    def binder(args: tuple, kwargs: dict) -> list:
        b = sig.bind(*args, **kwargs)
        b.apply_defaults()
        return list(b.arguments.values())

    return SimpleNamespace(
        gm=gm, method="symbolic_trace",
        param_bindings={n.name: str(n.target) for n in gm.graph.nodes if n.op == "get_attr"},
        input_names=names, input_binder=binder, out_spec=None, buffer_updates={},
        constants={})


def even_bounds(gm: torch.fx.GraphModule, n_stages: int) -> list[tuple[int, int]]:
    """n_stages contiguous bounds over the node list with about equal compute nodes."""
    nodes = list(gm.graph.nodes)
    compute = [i for i, n in enumerate(nodes) if n.op not in ("placeholder", "get_attr", "output")]
    n_stages = min(n_stages, len(compute))
    cuts = [compute[(k * len(compute)) // n_stages] for k in range(1, n_stages)]
    starts = [0] + cuts
    ends = cuts + [len(nodes)]
    return list(zip(starts, ends))


def clone_model(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model)


def grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {k: (None if p.grad is None else p.grad.clone()) for k, p in model.named_parameters()}


def assert_same_grads(a: torch.nn.Module, b: torch.nn.Module) -> None:
    ga, gb = grads(a), grads(b)
    assert ga.keys() == gb.keys()
    for k in ga:
        if ga[k] is None or gb[k] is None:
            assert ga[k] is None and gb[k] is None, k
        else:
            assert torch.equal(ga[k], gb[k]), f"grad of {k} differs: max abs diff {(ga[k] - gb[k]).abs().max()}"


def trees(n: int) -> dict[str, tuple]:
    """Plan trees over n stages: store-all, per-stage regions, nested bisection."""
    from tiny_backprop.tree import Keep, Region

    def bisect(s: int, e: int) -> tuple:
        if e - s == 1:
            return (Keep(s),)
        mid = (s + e) // 2
        left = Region(s, mid, bisect(s, mid)) if mid - s > 1 else Keep(s)
        return (left,) + bisect(mid, e)

    per_stage = tuple(Region(i, i + 1, (Keep(i),)) for i in range(n - 1)) + (Keep(n - 1),)
    outer = (Region(0, n - 1, bisect(0, n - 1)), Keep(n - 1)) if n > 2 else bisect(0, n)
    return {"store_all": tuple(Keep(i) for i in range(n)), "per_stage": per_stage,
            "nested": bisect(0, n), "outer": outer}


def step(model: torch.nn.Module, fn, args: tuple, kwargs: dict | None = None, seed: int = 0):
    """One forward+backward with a fixed seed; returns (loss, rng state after)."""
    torch.manual_seed(seed)
    out = fn(*args, **(kwargs or {}))
    loss = out if isinstance(out, torch.Tensor) else out[0]
    loss.backward()
    return loss.detach(), torch.get_rng_state()


def assert_same_buffers(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (ka, va), (kb, vb) in zip(a.named_buffers(), b.named_buffers()):
        assert ka == kb
        assert torch.equal(va, vb), f"buffer {ka} differs"


def have_planner() -> bool:
    try:
        import tiny_backprop.plan  # noqa: F401
    except ImportError:
        return False
    return True


def dev_plan(ir, budget, planner="optimal", max_stages=None):
    """Stand-in for tiny_backprop.plan until the planner lands: fixed tree shapes
    (store-all, or one nested region per run of recomputable stages)."""
    from tiny_backprop.chain import stage_chain
    from tiny_backprop.tree import Keep, Region

    sc = stage_chain(ir, max_stages or 8)
    n = len(sc)
    never = list(sc.never_recompute) + [True]  # the last stage is always kept here
    never[n - 1] = True
    if planner == "store_all" or budget == 1.0:
        tree = tuple(Keep(i) for i in range(n))
    else:
        tree, i = [], 0
        while i < n:
            if never[i]:
                tree.append(Keep(i))
                i += 1
                continue
            j = i
            while not never[j]:
                j += 1
            sub = trees(j - i + 1)["nested"]  # over stages 0..j-i, shifted to i

            def shift(nodes, d=i):
                return tuple(Keep(x.stage + d) if isinstance(x, Keep)
                             else Region(x.start + d, x.end + d, shift(x.children)) for x in nodes)

            inner = shift(sub)[:-1] if j - i > 0 else ()
            tree.append(Region(i, j, inner) if j - i > 1 else Region(i, j, (Keep(i),)))
            i = j
        tree = tuple(tree)
    return SimpleNamespace(tree=tree, chain=sc, peak_bytes=0, budget_bytes=0)
