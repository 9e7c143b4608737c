"""Built-in example models and workload profiles (sizes from the benchmark guide, seed 000).

Every model keeps its repeated blocks in ``model.blocks`` (an ``nn.ModuleList`` that its
forward iterates), so baselines can checkpoint per block, and returns a scalar loss when
given its targets, so one training step is ``model(*args, **kwargs).backward()``.

    >>> from tiny_backprop import zoo
    >>> w = zoo.build("gpt2", "small")
    >>> loss = w.model(*w.args, **w.kwargs)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

PROFILES = ("small", "medium", "large")


# --------------------------------------------------------------------------- models


class CausalSelfAttention(nn.Module):
    """Multi-head causal attention with plain matmul + softmax (no fused kernels)."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, causal: bool = True) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.causal = causal
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.attn_drop = nn.Dropout(dropout)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        h = self.n_heads
        q, k, v = self.qkv(x).split(c, dim=2)
        q = q.view(b, t, h, c // h).transpose(1, 2)
        k = k.view(b, t, h, c // h).transpose(1, 2)
        v = v.view(b, t, h, c // h).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(c // h))
        if self.causal:
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf"))
        att = self.attn_drop(F.softmax(att, dim=-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.resid_drop(self.proj(y))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: attention and a 4x GELU MLP, each with a residual."""

    def __init__(self, d_model: int, n_heads: int, dropout: float, causal: bool = True) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_heads, dropout, causal)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model),
            nn.GELU(),
            nn.Linear(4 * d_model, d_model),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT2Decoder(nn.Module):
    """A GPT-2-style decoder LM; returns the cross-entropy loss when given targets."""

    def __init__(
        self, vocab: int, seq_len: int, d_model: int, n_layers: int, n_heads: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, dropout) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab, bias=False)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        t = idx.shape[1]
        pos = torch.arange(t, device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for blk in self.blocks:
            x = blk(x)
        logits = self.head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


class TransformerEncoder(nn.Module):
    """A bidirectional encoder over continuous inputs with a regression head (MSE loss)."""

    def __init__(self, d_model: int, n_layers: int, n_heads: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.inp = nn.Linear(d_model, d_model)
        self.blocks = nn.ModuleList(
            TransformerBlock(d_model, n_heads, dropout, causal=False) for _ in range(n_layers)
        )
        self.ln_f = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, d_model)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        for blk in self.blocks:
            h = blk(h)
        y = self.out(self.ln_f(h))
        return y if target is None else F.mse_loss(y, target)


class ResidualBlock(nn.Module):
    """ResNet basic block with BatchNorm and a 1x1 downsample branch when the shape changes."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        skip = x if self.down is None else self.down(x)
        return F.relu(y + skip)


class ResNet(nn.Module):
    """A small ResNet-style classifier; returns cross-entropy loss when given labels."""

    def __init__(self, widths: tuple[int, ...], blocks_per_stage: int, n_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(blocks_per_stage):
                blocks.append(ResidualBlock(c, w, 2 if (j == 0 and i > 0) else 1))
                c = w
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(c, n_classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(x)
        for blk in self.blocks:
            x = blk(x)
        logits = self.fc(x.mean(dim=(2, 3)))
        return logits if labels is None else F.cross_entropy(logits, labels)


class ConvBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU (a diffusion-U-Net-style block)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, 1, 1),
            nn.GroupNorm(min(8, c_out), c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1),
            nn.GroupNorm(min(8, c_out), c_out),
            nn.SiLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UNet(nn.Module):
    """A U-Net with skip concatenations; returns MSE loss against a target when given one.

    ``blocks`` holds the encoder blocks, the bottleneck and the decoder blocks in order.
    """

    def __init__(self, base: int, depth: int, in_ch: int = 3) -> None:
        super().__init__()
        self.depth = depth
        chans = [base * 2**i for i in range(depth + 1)]
        self.inp = nn.Conv2d(in_ch, base, 3, 1, 1)
        blocks: list[nn.Module] = []
        for i in range(depth):
            blocks.append(ConvBlock(chans[i], chans[i + 1] if i + 1 < depth else chans[i]))
        enc_out = [chans[i + 1] if i + 1 < depth else chans[i] for i in range(depth)]
        blocks.append(ConvBlock(enc_out[-1], enc_out[-1]))  # bottleneck
        c = enc_out[-1]
        for i in reversed(range(depth)):
            blocks.append(ConvBlock(c + enc_out[i], chans[i]))
            c = chans[i]
        self.blocks = nn.ModuleList(blocks)
        self.out = nn.Conv2d(c, in_ch, 1)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(x)
        skips = []
        for i in range(self.depth):
            h = self.blocks[i](h)
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        h = self.blocks[self.depth](h)
        for j, i in enumerate(reversed(range(self.depth))):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = self.blocks[self.depth + 1 + j](torch.cat([h, skips[i]], dim=1))
        y = self.out(h)
        return y if target is None else F.mse_loss(y, target)


class MLPBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d, 2 * d)
        self.fc2 = nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(torch.tanh(self.fc1(x)))


class MLP(nn.Module):
    """A residual MLP chain; returns MSE loss when given a target."""

    def __init__(self, d: int, n_layers: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MLPBlock(d) for _ in range(n_layers))
        self.head = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
        for blk in self.blocks:
            x = blk(x)
        y = self.head(x)
        return y if target is None else F.mse_loss(y, target)


# --------------------------------------------------------------------------- profiles

# GPT-2 medium/large follow ANCHORS.md (batch, seq, vocab, d_model, layers); small is a
# quick smoke-test size. Heads: d_model / 64 (at least 2).
GPT2_PROFILES: dict[str, dict[str, int]] = {
    "small": dict(batch=2, seq=128, vocab=2000, d_model=128, n_layers=4, n_heads=2),
    "medium": dict(batch=4, seq=256, vocab=4000, d_model=256, n_layers=8, n_heads=4),
    "large": dict(batch=6, seq=512, vocab=8000, d_model=384, n_layers=12, n_heads=6),
}
TRANSFORMER_PROFILES: dict[str, dict[str, int]] = {
    "small": dict(batch=4, seq=128, d_model=128, n_layers=4, n_heads=2),
    "medium": dict(batch=8, seq=256, d_model=256, n_layers=8, n_heads=4),
    "large": dict(batch=8, seq=512, d_model=384, n_layers=12, n_heads=6),
}
RESNET_PROFILES: dict[str, dict[str, Any]] = {
    "small": dict(batch=8, image=32, widths=(16, 32, 64), blocks_per_stage=2, classes=10),
    "medium": dict(batch=16, image=64, widths=(32, 64, 128), blocks_per_stage=2, classes=100),
    "large": dict(batch=32, image=96, widths=(64, 128, 256), blocks_per_stage=3, classes=100),
}
UNET_PROFILES: dict[str, dict[str, int]] = {
    "small": dict(batch=2, image=32, base=16, depth=3),
    "medium": dict(batch=4, image=64, base=32, depth=3),
    "large": dict(batch=4, image=128, base=32, depth=4),
}
MLP_PROFILES: dict[str, dict[str, int]] = {
    "small": dict(batch=32, d=64, n_layers=6),
    "medium": dict(batch=256, d=512, n_layers=12),
    "large": dict(batch=1024, d=1024, n_layers=16),
}

MODELS = ("gpt2", "transformer", "resnet", "unet", "mlp")


@dataclass
class Workload:
    """A model plus example inputs: ``model(*args, **kwargs)`` returns a scalar loss."""

    name: str
    profile: str
    model: nn.Module
    args: tuple
    kwargs: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def build(
    name: str,
    profile: str = "small",
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    overrides: dict[str, Any] | None = None,
) -> Workload:
    """Build a zoo model and a batch of random inputs/targets.

    Args:
        name: one of ``MODELS``.
        profile: one of ``PROFILES``.
        seed: seed for weights and data (the global RNG state is restored afterwards).
        device: where the model and data live.
        overrides: profile fields to replace (e.g. ``{"seq": 1024}``).
    """
    if name not in MODELS:
        raise ValueError(f"name must be one of {', '.join(MODELS)}; got {name!r}")
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {profile!r}")
    table = {
        "gpt2": GPT2_PROFILES,
        "transformer": TRANSFORMER_PROFILES,
        "resnet": RESNET_PROFILES,
        "unet": UNET_PROFILES,
        "mlp": MLP_PROFILES,
    }[name]
    cfg = dict(table[profile])
    for key, value in (overrides or {}).items():
        if key not in cfg:
            raise ValueError(
                f"overrides: unknown field {key!r} for {name}; known: {', '.join(sorted(cfg))}"
            )
        cfg[key] = value
    dev = torch.device(device)
    rng_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed + 1)
        model, args = _make(name, cfg, gen)
    finally:
        torch.random.set_rng_state(rng_state)
    model = model.to(dev)
    args = tuple(a.to(dev) for a in args)
    return Workload(name=name, profile=profile, model=model, args=args, config=cfg)


def _make(name: str, cfg: dict[str, Any], gen: torch.Generator) -> tuple[nn.Module, tuple]:
    b = cfg["batch"]
    if name == "gpt2":
        m = GPT2Decoder(cfg["vocab"], cfg["seq"], cfg["d_model"], cfg["n_layers"], cfg["n_heads"])
        idx = torch.randint(0, cfg["vocab"], (b, cfg["seq"]), generator=gen)
        tgt = torch.randint(0, cfg["vocab"], (b, cfg["seq"]), generator=gen)
        return m, (idx, tgt)
    if name == "transformer":
        m = TransformerEncoder(cfg["d_model"], cfg["n_layers"], cfg["n_heads"])
        x = torch.randn(b, cfg["seq"], cfg["d_model"], generator=gen)
        y = torch.randn(b, cfg["seq"], cfg["d_model"], generator=gen)
        return m, (x, y)
    if name == "resnet":
        m = ResNet(tuple(cfg["widths"]), cfg["blocks_per_stage"], cfg["classes"])
        x = torch.randn(b, 3, cfg["image"], cfg["image"], generator=gen)
        y = torch.randint(0, cfg["classes"], (b,), generator=gen)
        return m, (x, y)
    if name == "unet":
        m = UNet(cfg["base"], cfg["depth"])
        x = torch.randn(b, 3, cfg["image"], cfg["image"], generator=gen)
        y = torch.randn(b, 3, cfg["image"], cfg["image"], generator=gen)
        return m, (x, y)
    m = MLP(cfg["d"], cfg["n_layers"])
    x = torch.randn(b, cfg["d"], generator=gen)
    y = torch.randn(b, cfg["d"], generator=gen)
    return m, (x, y)
