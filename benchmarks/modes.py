"""How each benchmark mode wraps a model. A mode returns the module to call for a step.

- ``naive``: the model as is.
- ``checkpoint``: every entry of ``model.blocks`` wrapped in non-reentrant
  ``torch.utils.checkpoint.checkpoint``.
- ``checkpoint_seq``: ``torch.utils.checkpoint.checkpoint_sequential`` over the blocks with
  round(sqrt(L)) segments (torch leaves the last segment un-checkpointed). Needs a model
  whose forward runs its blocks as a plain chain.
- ``tiny``: ``tiny_backprop.HCModule(model, budget)``.
- ``compile_budget``: ``torch.compile`` with
  ``torch._functorch.config.activation_memory_budget``; its gradients are wrong with
  dropout on (see ANCHORS.md), which ``grads_match_naive`` records.
- ``hf_checkpointing``: Hugging Face ``gradient_checkpointing_enable`` (non-reentrant).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint, checkpoint_sequential

ZOO_MODES = ("naive", "checkpoint", "checkpoint_seq", "tiny", "compile_budget")
HF_MODES = ("naive", "hf_checkpointing", "tiny")
ALL_MODES = ZOO_MODES + ("hf_checkpointing",)

# Zoo models whose forward is ``for blk in self.blocks: x = blk(x)`` (U-Net indexes its
# blocks around skip connections, so checkpoint_sequential cannot wrap it).
CHAIN_MODELS = frozenset({"gpt2", "transformer", "resnet", "mlp"})


class ModeUnavailable(RuntimeError):
    """The mode cannot run here (library missing, model not a chain, ...)."""


class Checkpointed(nn.Module):
    """Runs ``inner`` under non-reentrant activation checkpointing."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return checkpoint(self.inner, *args, use_reentrant=False, **kwargs)


class SequentialCheckpointed(nn.Module):
    """Runs a chain of blocks with ``checkpoint_sequential`` in ``segments`` segments."""

    def __init__(self, blocks: nn.ModuleList, segments: int) -> None:
        super().__init__()
        self.chain = nn.Sequential(*blocks)
        self.segments = segments

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return checkpoint_sequential(self.chain, self.segments, x, use_reentrant=False)


def sqrt_segments(n_blocks: int) -> int:
    """round(sqrt(L)) segments, at least 1 and at most L."""
    return max(1, min(n_blocks, round(math.sqrt(n_blocks))))


def _blocks(model: nn.Module) -> nn.ModuleList:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ModeUnavailable("model has no nn.ModuleList 'blocks' to checkpoint")
    return blocks


def apply_mode(
    mode: str,
    model: nn.Module,
    *,
    model_name: str,
    budget: Any = 0.5,
    compile_budget: float = 0.5,
) -> tuple[nn.Module, dict[str, Any]]:
    """Wrap ``model`` for ``mode``; returns (module to call, facts about the wrapping).

    Raises ModeUnavailable when the mode cannot run for this model or environment.
    """
    info: dict[str, Any] = {}
    if mode == "naive":
        return model, info
    if mode == "checkpoint":
        blocks = _blocks(model)
        for i in range(len(blocks)):
            blocks[i] = Checkpointed(blocks[i])
        info["checkpointed_blocks"] = len(blocks)
        return model, info
    if mode == "checkpoint_seq":
        if model_name not in CHAIN_MODELS:
            raise ModeUnavailable(
                f"checkpoint_seq needs blocks run as a plain chain; {model_name}'s forward "
                "indexes its blocks around skip connections"
            )
        blocks = _blocks(model)
        seg = sqrt_segments(len(blocks))
        model.blocks = nn.ModuleList([SequentialCheckpointed(blocks, seg)])
        info.update(segments=seg, n_blocks=len(blocks))
        return model, info
    if mode == "tiny":
        try:
            from tiny_backprop import HCModule
        except Exception as exc:  # ImportError, AttributeError from the lazy export, ...
            raise ModeUnavailable(f"tiny_backprop.HCModule unavailable: {exc}") from exc
        return HCModule(model, budget), {"budget": budget}
    if mode == "compile_budget":
        import torch._functorch.config as fconfig

        fconfig.activation_memory_budget = float(compile_budget)
        info["activation_memory_budget"] = float(compile_budget)
        return torch.compile(model), info
    if mode == "hf_checkpointing":
        inner = getattr(model, "hf_model", None)
        if inner is None or not hasattr(inner, "gradient_checkpointing_enable"):
            raise ModeUnavailable("hf_checkpointing needs a Hugging Face model")
        inner.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return model, info
    raise ValueError(f"unknown mode {mode!r}; known: {', '.join(ALL_MODES)}")
