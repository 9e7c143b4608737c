"""Small models for the capture tests (random init, CPU, fast)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class MLP(nn.Module):
    def __init__(self, d: int = 16, h: int = 32) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d, h), nn.Linear(h, h), nn.Linear(h, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(torch.tanh(self.fc2(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    def __init__(self, d: int, heads: int, p: float) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.attn_drop, self.drop = nn.Dropout(p), nn.Dropout(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / (d // self.heads) ** 0.5)
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
        att = self.attn_drop(att.masked_fill(~mask, float("-inf")).softmax(-1))
        y = (att @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.drop(self.proj(y))
        return x + self.drop(self.mlp(self.ln2(x)))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 64, d: int = 32, heads: int = 2, layers: int = 2,
                 ctx: int = 16, p: float = 0.1) -> None:
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, d), nn.Embedding(ctx, d)
        self.drop = nn.Dropout(p)
        self.blocks = nn.ModuleList(Block(d, heads, p) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(d), nn.Linear(d, vocab, bias=False)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln(x))


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.down(x))


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 1, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.layer1, self.layer2 = ResBlock(8, 16, 2), ResBlock(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(x.mean((2, 3)))


class UNet(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.e1, self.e2 = nn.Conv2d(3, c, 3, padding=1), nn.Conv2d(c, 2 * c, 3, padding=1)
        self.mid = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.d1 = nn.Conv2d(3 * c, c, 3, padding=1)
        self.d2 = nn.Conv2d(2 * c, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(F.max_pool2d(a, 2)))
        m = F.relu(self.mid(b))
        u = F.relu(self.d1(torch.cat([F.interpolate(m, scale_factor=2.0), self.up(b)], 1)))
        return self.d2(torch.cat([u, a], 1))


class KwargsDict(nn.Module):
    """Keyword inputs, an optional mask, a dict output (like HF's ModelOutput)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc, self.dec = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x: torch.Tensor, *, mask: torch.Tensor | None = None,
                scale: float = 1.0) -> dict[str, torch.Tensor]:
        h = self.enc(x)
        if mask is not None:
            h = h * mask
        return {"hidden": h, "out": self.dec(h) * scale}


class VarargsKwargsDict(KwargsDict):
    """Same, behind a (*args, **kwargs) forward that symbolic_trace cannot bind (like HF)."""

    def forward(self, *args, **kwargs):  # type: ignore[override]
        return super().forward(*args, **kwargs)


class InplaceReLU(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(8, 8), nn.ReLU(inplace=True), nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.fc1(x)) * 2.0
        y.add_(1.0)
        return self.fc2(y)


class DataDependent(nn.Module):
    """Python control flow on a tensor value: defeats symbolic_trace and export."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        while y.abs().max() > 1.0:  # data-dependent loop
            y = y / 2
        return y


def cases() -> dict:
    """name -> (model factory, example args, example kwargs)."""
    g = torch.Generator().manual_seed(0)
    return {
        "mlp": (MLP, (torch.randn(4, 16, generator=g),), {}),
        "gpt": (TinyGPT, (torch.randint(0, 64, (2, 16), generator=g),), {}),
        "cnn": (SmallCNN, (torch.randn(2, 3, 16, 16, generator=g),), {}),
        "unet": (UNet, (torch.randn(1, 3, 16, 16, generator=g),), {}),
        "kwargs": (KwargsDict, (torch.randn(3, 8, generator=g),),
                   {"mask": torch.rand(3, 8, generator=g), "scale": 2.0}),
        "varargs": (VarargsKwargsDict, (torch.randn(3, 8, generator=g),),
                    {"mask": torch.rand(3, 8, generator=g), "scale": 2.0}),
        "inplace": (InplaceReLU, (torch.randn(3, 8, generator=g),), {}),
    }
