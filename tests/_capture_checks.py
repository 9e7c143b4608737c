"""Checks shared by the capture tests: bitwise replay, state snapshots, byte checks."""

from __future__ import annotations

import copy

import torch
from torch.utils import _pytree as pytree


def leaves(out) -> list[torch.Tensor]:
    return [v for v in pytree.tree_leaves(out) if isinstance(v, torch.Tensor)]


def loss_of(out) -> torch.Tensor:
    """A scalar touching every float output, with fixed per-output weights."""
    total = 0.0
    for i, t in enumerate(leaves(out)):
        if t.is_floating_point() and t.requires_grad:
            total = total + (t.float() * (i + 1)).sin().sum()
    return total


def eager_vs_captured(model: torch.nn.Module, cap_model: torch.nn.Module, cap, args, kwargs,
                      seed: int = 1234) -> None:
    """Eager forward+backward of `model` == `cap.run(cap_model)`, bitwise (outputs, grads, buffers).

    `model` and `cap_model` are identical copies; `cap` was captured from `cap_model`.
    """
    torch.manual_seed(seed)
    ref = model(*args, **kwargs)
    loss_of(ref).backward()
    torch.manual_seed(seed)
    out = cap.run(cap_model, *args, **kwargs)
    loss_of(out).backward()
    assert type(out) is type(ref)
    ref_leaves, out_leaves = leaves(ref), leaves(out)
    assert len(ref_leaves) == len(out_leaves) > 0
    for a, b in zip(ref_leaves, out_leaves):
        assert torch.equal(a, b)
    for (name, p), (_, q) in zip(model.named_parameters(), cap_model.named_parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            assert torch.equal(p.grad, q.grad), f"grad of {name} differs"
    for (name, b), (_, c) in zip(model.named_buffers(), cap_model.named_buffers()):
        assert torch.equal(b, c), f"buffer {name} differs after one forward"


def snapshot(model: torch.nn.Module) -> dict:
    return {
        "modes": [m.training for m in model.modules()],
        "state": copy.deepcopy(model.state_dict(keep_vars=False)),
        "grads": [p.grad for p in model.parameters()],
        "grad_values": [None if p.grad is None else p.grad.clone() for p in model.parameters()],
        "rng": torch.get_rng_state(),
    }


def assert_unchanged(model: torch.nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["modes"] == before["modes"], "train/eval flags changed"
    assert after["state"].keys() == before["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), f"{k} changed"
    for g0, g1 in zip(before["grads"], after["grads"]):
        assert g0 is g1, ".grad object replaced"
    for g0, g1 in zip(before["grad_values"], after["grad_values"]):
        assert (g0 is None and g1 is None) or torch.equal(g0, g1), ".grad value changed"
    assert torch.equal(after["rng"], before["rng"]), "global RNG state changed"


def meta_bytes(val) -> int | None:
    """Bytes of the tensors in an export node's meta['val'] (fake tensors), None if absent."""
    if val is None:
        return None
    return sum(t.numel() * t.element_size() for t in leaves(val))
