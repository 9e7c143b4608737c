"""Plain-JAX models for the JAX benchmark and tests: MLP chain, residual MLP, small GPT.

Every model is ``loss(params, *inputs) -> scalar``; ``init_*`` returns (params, inputs).
Sizes are small by default so the tests run in seconds on a CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

Model = tuple[Callable[..., Any], Any, tuple[Any, ...]]


def _dense(key: Any, n_in: int, n_out: int) -> dict[str, Any]:
    w = jax.random.normal(key, (n_in, n_out), jnp.float32) / jnp.sqrt(n_in)
    return {"w": w, "b": jnp.zeros((n_out,), jnp.float32)}


def layer_norm(x: Any, p: dict[str, Any]) -> Any:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(var + 1e-5) * p["g"] + p["b"]


def _ln(d: int) -> dict[str, Any]:
    return {"g": jnp.ones((d,), jnp.float32), "b": jnp.zeros((d,), jnp.float32)}


def mlp_loss(params: list[dict[str, Any]], x: Any) -> Any:
    """tanh MLP chain; loss = mean square of the output."""
    for p in params:
        x = jnp.tanh(x @ p["w"] + p["b"])
    return jnp.mean(x ** 2)


def init_mlp(layers: int = 8, batch: int = 64, width: int = 128, seed: int = 0) -> Model:
    keys = jax.random.split(jax.random.PRNGKey(seed), layers + 1)
    params = [_dense(k, width, width) for k in keys[:-1]]
    x = jax.random.normal(keys[-1], (batch, width), jnp.float32)
    return mlp_loss, params, (x,)


def resmlp_loss(params: list[dict[str, Any]], x: Any) -> Any:
    """Pre-norm residual MLP: x + W2 gelu(W1 LN(x)) per block."""
    for p in params:
        h = layer_norm(x, p["ln"])
        h = jax.nn.gelu(h @ p["fc1"]["w"] + p["fc1"]["b"])
        x = x + h @ p["fc2"]["w"] + p["fc2"]["b"]
    return jnp.mean(x ** 2)


def init_resmlp(blocks: int = 6, batch: int = 64, width: int = 64, hidden: int = 256,
                seed: int = 0) -> Model:
    keys = jax.random.split(jax.random.PRNGKey(seed), 2 * blocks + 1)
    params = [{"ln": _ln(width), "fc1": _dense(keys[2 * i], width, hidden),
               "fc2": _dense(keys[2 * i + 1], hidden, width)} for i in range(blocks)]
    x = jax.random.normal(keys[-1], (batch, width), jnp.float32)
    return resmlp_loss, params, (x,)


def _dropout(key: Any, x: Any, rate: float) -> Any:
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


def gpt_block(p: dict[str, Any], x: Any, key: Any, n_head: int, rate: float) -> Any:
    b, t, d = x.shape
    k1, k2 = jax.random.split(key)
    h = layer_norm(x, p["ln1"])
    qkv = h @ p["attn"]["w"] + p["attn"]["b"]
    q, k, v = jnp.split(qkv, 3, axis=-1)

    def heads(z: Any) -> Any:
        return z.reshape(b, t, n_head, d // n_head).transpose(0, 2, 1, 3)

    q, k, v = heads(q), heads(k), heads(v)
    att = (q @ k.transpose(0, 1, 3, 2)) / jnp.sqrt(d // n_head).astype(x.dtype)
    mask = jnp.tril(jnp.ones((t, t), bool))
    att = jnp.where(mask, att, -1e9)
    att = jax.nn.softmax(att, axis=-1)
    att = _dropout(k1, att, rate)
    y = (att @ v).transpose(0, 2, 1, 3).reshape(b, t, d)
    x = x + y @ p["proj"]["w"] + p["proj"]["b"]
    h = layer_norm(x, p["ln2"])
    h = jax.nn.gelu(h @ p["fc1"]["w"] + p["fc1"]["b"])
    h = _dropout(k2, h @ p["fc2"]["w"] + p["fc2"]["b"], rate)
    return x + h


def _embed(params: dict[str, Any], tokens: Any) -> Any:
    t = tokens.shape[1]
    return params["wte"][tokens[:, :-1]] + params["wpe"][: t - 1]


def _head(params: dict[str, Any], x: Any, tokens: Any) -> Any:
    x = layer_norm(x, params["lnf"])
    logits = x @ params["wte"].T
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)
    return nll.mean()


def gpt_loss(params: dict[str, Any], tokens: Any, key: Any, n_head: int = 4,
             rate: float = 0.1) -> Any:
    """Next-token cross-entropy of a GPT-2-style LM; dropout keyed by `key`."""
    x = _embed(params, tokens)
    keys = jax.random.split(key, len(params["blocks"]))
    for i, p in enumerate(params["blocks"]):
        x = gpt_block(p, x, keys[i], n_head, rate)
    return _head(params, x, tokens)


def gpt_loss_checkpoint(params: dict[str, Any], tokens: Any, key: Any, policy: Any = None,
                        n_head: int = 4, rate: float = 0.1) -> Any:
    """`gpt_loss` with `jax.checkpoint` (optionally a policy) around every block."""
    block = jax.checkpoint(gpt_block, static_argnums=(3, 4), policy=policy)
    x = _embed(params, tokens)
    keys = jax.random.split(key, len(params["blocks"]))
    for i, p in enumerate(params["blocks"]):
        x = block(p, x, keys[i], n_head, rate)
    return _head(params, x, tokens)


def stack_blocks(params: dict[str, Any]) -> dict[str, Any]:
    """Params with the block list stacked along a leading axis (for `gpt_loss_scan`)."""
    out = dict(params)
    out["blocks"] = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *params["blocks"])
    return out


def gpt_loss_scan(params: dict[str, Any], tokens: Any, key: Any, n_head: int = 4,
                  rate: float = 0.1) -> Any:
    """`gpt_loss` as `lax.scan` over a checkpointed block (params from `stack_blocks`)."""
    n = jax.tree_util.tree_leaves(params["blocks"])[0].shape[0]
    keys = jax.random.split(key, n)

    @jax.checkpoint
    def body(x: Any, pk: Any) -> tuple[Any, None]:
        p, k = pk
        return gpt_block(p, x, k, n_head, rate), None

    x, _ = jax.lax.scan(body, _embed(params, tokens), (params["blocks"], keys))
    return _head(params, x, tokens)


def init_gpt(layers: int = 2, batch: int = 4, seq: int = 32, width: int = 64, vocab: int = 128,
             seed: int = 0) -> Model:
    keys = jax.random.split(jax.random.PRNGKey(seed), 4 * layers + 4)
    blocks = []
    for i in range(layers):
        k = keys[4 * i: 4 * i + 4]
        blocks.append({"ln1": _ln(width), "attn": _dense(k[0], width, 3 * width),
                       "proj": _dense(k[1], width, width), "ln2": _ln(width),
                       "fc1": _dense(k[2], width, 4 * width),
                       "fc2": _dense(k[3], 4 * width, width)})
    params = {"wte": jax.random.normal(keys[-1], (vocab, width), jnp.float32) * 0.02,
              "wpe": jax.random.normal(keys[-2], (seq, width), jnp.float32) * 0.02,
              "blocks": blocks, "lnf": _ln(width)}
    tokens = jax.random.randint(keys[-3], (batch, seq + 1), 0, vocab)
    return gpt_loss, params, (tokens[:, : seq + 1], jax.random.PRNGKey(seed + 1))


def temp_bytes(fn: Callable[..., Any], *args: Any) -> int:
    """XLA's temp bytes of `jax.jit(fn)` compiled for these arguments."""
    return int(jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes)
