"""Build the workload a worker measures: a zoo model or a small random-init HF model.

A workload spec is a plain dict (it crosses a process boundary as JSON):
``{"source": "zoo"|"hf", "model": name, "profile": ..., "overrides": {...}}``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tiny_backprop import zoo

# Small random-init Hugging Face configs (no downloads). Sizes are ours, not HF's.
HF_PROFILES: dict[str, dict[str, dict[str, int]]] = {
    "gpt2": {
        "small": dict(batch=2, seq=128, vocab=2000, d_model=128, n_layers=4, n_heads=2),
        "medium": dict(batch=4, seq=256, vocab=4000, d_model=256, n_layers=8, n_heads=4),
        "large": dict(batch=6, seq=512, vocab=8000, d_model=384, n_layers=12, n_heads=6),
    },
    "llama": {
        "small": dict(batch=2, seq=128, vocab=2000, d_model=128, n_layers=4, n_heads=2),
        "medium": dict(batch=4, seq=256, vocab=4000, d_model=256, n_layers=8, n_heads=4),
        "large": dict(batch=6, seq=512, vocab=8000, d_model=384, n_layers=12, n_heads=6),
    },
}


class HFLoss(nn.Module):
    """Calls a Hugging Face causal LM with labels and returns its scalar loss tensor."""

    def __init__(self, hf_model: nn.Module) -> None:
        super().__init__()
        self.hf_model = hf_model

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.hf_model(input_ids=input_ids, labels=labels).loss


def _hf_model(name: str, cfg: dict[str, int]) -> nn.Module:
    import transformers

    if name == "gpt2":
        conf = transformers.GPT2Config(
            vocab_size=cfg["vocab"], n_positions=cfg["seq"], n_embd=cfg["d_model"],
            n_layer=cfg["n_layers"], n_head=cfg["n_heads"],
        )
        return transformers.GPT2LMHeadModel(conf)
    conf = transformers.LlamaConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["d_model"], intermediate_size=4 * cfg["d_model"],
        num_hidden_layers=cfg["n_layers"], num_attention_heads=cfg["n_heads"],
        num_key_value_heads=cfg["n_heads"], max_position_embeddings=cfg["seq"],
    )
    return transformers.LlamaForCausalLM(conf)


def build_hf(
    name: str, profile: str, *, seed: int, device: str, overrides: dict[str, Any] | None = None
) -> zoo.Workload:
    """A random-init HF causal LM (seeded) wrapped to return its loss, plus a batch."""
    if name not in HF_PROFILES:
        raise ValueError(f"hf model must be one of {', '.join(HF_PROFILES)}; got {name!r}")
    if profile not in HF_PROFILES[name]:
        raise ValueError(f"profile must be one of {', '.join(HF_PROFILES[name])}; got {profile!r}")
    cfg = dict(HF_PROFILES[name][profile])
    for k, v in (overrides or {}).items():
        if k not in cfg:
            raise ValueError(f"overrides: unknown field {k!r}; known: {', '.join(sorted(cfg))}")
        cfg[k] = v
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = HFLoss(_hf_model(name, cfg))
        gen = torch.Generator().manual_seed(seed + 1)
        ids = torch.randint(0, cfg["vocab"], (cfg["batch"], cfg["seq"]), generator=gen)
    finally:
        torch.random.set_rng_state(state)
    model.train()
    dev = torch.device(device)
    return zoo.Workload(
        name=name, profile=profile, model=model.to(dev), args=(ids.to(dev), ids.to(dev)),
        config=cfg,
    )


def build_workload(spec: dict[str, Any], *, seed: int, device: str) -> zoo.Workload:
    """Build the workload described by ``spec`` (see module docstring)."""
    if spec["source"] == "hf":
        return build_hf(spec["model"], spec["profile"], seed=seed, device=device,
                        overrides=spec.get("overrides"))
    return zoo.build(spec["model"], spec["profile"], seed=seed, device=device,
                     overrides=spec.get("overrides"))
