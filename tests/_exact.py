"""Differential checks: HCModule against the plain model, same seed, torch.equal on CPU."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from tiny_backprop import BudgetError, HCModule


def loss_of(out: Any) -> torch.Tensor:
    """The scalar loss of a model output (a tensor, a tuple, an HF ModelOutput)."""
    if isinstance(out, torch.Tensor):
        return out if out.dim() == 0 else out.float().pow(2).mean()
    loss = getattr(out, "loss", None)
    if loss is not None:
        return loss
    first = out[0] if isinstance(out, (tuple, list)) else out["logits"]
    return first.float().pow(2).mean()


def min_budget(model: nn.Module, args: tuple, kwargs: dict, **hc_kwargs: Any) -> int:
    """The smallest feasible budget (bytes) of `model` for these inputs."""
    hc = HCModule(model, 4096, **hc_kwargs)
    try:
        hc(*args, **kwargs)
    except BudgetError as e:
        return e.minimum_bytes
    return 4096


def assert_same_state(a: nn.Module, b: nn.Module, what: str = "") -> None:
    """Parameters, gradients and buffers of two models are equal (torch.equal)."""
    pa, pb = dict(a.named_parameters()), dict(b.named_parameters())
    assert pa.keys() == pb.keys()
    for k in pa:
        assert torch.equal(pa[k], pb[k]), f"{what}param {k} differs"
        ga, gb = pa[k].grad, pb[k].grad
        if ga is None or gb is None:
            assert ga is None and gb is None, f"{what}grad of {k}: one is None"
        else:
            assert torch.equal(ga, gb), (f"{what}grad of {k} differs: max abs diff "
                                         f"{(ga - gb).abs().max().item()}")
    ba, bb = dict(a.named_buffers()), dict(b.named_buffers())
    assert ba.keys() == bb.keys()
    for k in ba:
        assert torch.equal(ba[k], bb[k]), f"{what}buffer {k} differs"


def run_steps(model: nn.Module, make_inputs: Callable[[int], tuple[tuple, dict]],
              budget: Any, steps: int = 3, seed: int = 0, wrap: bool = True,
              autocast: torch.dtype | None = None,
              prepare: Callable[[nn.Module, int], None] | None = None, **hc_kwargs: Any
              ) -> tuple[list[torch.Tensor], Any, torch.Tensor]:
    """AdamW steps of `model` (wrapped in HCModule when `wrap`); returns the losses, the
    HCModule (or None) and the RNG state after the steps. Plans on FLOP costs unless
    `hc_kwargs` says otherwise (the same plan on every run)."""
    hc_kwargs.setdefault("cost_model", "flops")
    runner: nn.Module = HCModule(model, budget, **hc_kwargs) if wrap else model
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(seed)
    losses = []
    for i in range(steps):
        if prepare is not None:
            prepare(model, i)
        args, kwargs = make_inputs(i)
        opt.zero_grad(set_to_none=True)
        if autocast is not None:
            with torch.autocast("cpu", dtype=autocast):
                loss = loss_of(runner(*args, **kwargs))
        else:
            loss = loss_of(runner(*args, **kwargs))
        loss.backward()
        losses.append(loss.detach().clone())
        if i < steps - 1:
            opt.step()
    return losses, (runner if wrap else None), torch.get_rng_state()


def assert_exact(model: nn.Module, make_inputs: Callable[[int], tuple[tuple, dict]],
                 budget: Any, steps: int = 3, autocast: torch.dtype | None = None,
                 prepare: Callable[[nn.Module, int], None] | None = None,
                 **hc_kwargs: Any) -> Any:
    """HCModule(model, budget) trains exactly like the plain model over `steps` AdamW
    steps: losses, every gradient, parameters, buffers and the RNG state. `budget` may
    be "min" (the smallest feasible budget). Returns the HCModule."""
    ref = copy.deepcopy(model)
    if budget == "min":
        args, kwargs = make_inputs(0)
        with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
            budget = min_budget(copy.deepcopy(model), args, kwargs)
    la, hc, rng_a = run_steps(model, make_inputs, budget, steps, autocast=autocast,
                              prepare=prepare, **hc_kwargs)
    lb, _, rng_b = run_steps(ref, make_inputs, budget, steps, wrap=False, autocast=autocast,
                             prepare=prepare)
    for i, (x, y) in enumerate(zip(la, lb)):
        assert torch.equal(x, y), f"loss of step {i} differs: {x.item()} vs {y.item()}"
    assert_same_state(model, ref)
    assert torch.equal(rng_a, rng_b), "RNG state after the steps differs"
    return hc
