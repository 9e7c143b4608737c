"""HCModule on HF models (export path), bf16 autocast, DDP, steady memory."""

from __future__ import annotations

import gc
import os
import socket

import pytest
import torch

from tests._runtime_dev import (
    assert_same_grads,
    clone_model,
    dev_plan,
    even_bounds,
    fx_capture,
    have_planner,
    trees,
)
from tiny_backprop import BudgetError, HCModule, zoo
from tiny_backprop import hc_module as hc_mod
from tiny_backprop.runtime.interpreter import Executor


@pytest.fixture(autouse=True)
def _planner(monkeypatch):
    if not have_planner():
        monkeypatch.setattr(hc_mod, "_make_plan", dev_plan)


def _hf(kind: str):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64,
                                      n_positions=32, attn_implementation="eager")
        return transformers.GPT2LMHeadModel(cfg)
    cfg = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=2, num_key_value_heads=1,
                                   vocab_size=64, max_position_embeddings=32,
                                   attn_implementation="eager")
    return transformers.LlamaForCausalLM(cfg)


@pytest.mark.parametrize("kind", ["gpt2", "llama"])
@pytest.mark.parametrize("budget", [1.0, 0.5, "min"])
def test_hf_models_exact(kind, budget) -> None:
    model = _hf(kind).train()
    ref = clone_model(model)
    ids = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    if budget == "min":  # the smallest feasible budget, from the planner's own error
        with pytest.raises(BudgetError) as err:
            HCModule(model, 1)(ids, labels=ids, use_cache=False)
        budget = err.value.minimum_bytes
    hc = HCModule(model, budget, track_memory=True)  # always through the executor
    torch.manual_seed(5)
    out = hc(ids, labels=ids, use_cache=False)
    out.loss.backward()
    torch.manual_seed(5)
    out_ref = ref(ids, labels=ids, use_cache=False)
    out_ref.loss.backward()
    assert type(out) is type(out_ref)  # dict-like ModelOutput
    assert torch.equal(out.loss, out_ref.loss)
    assert torch.equal(out.logits, out_ref.logits)
    assert_same_grads(model, ref)
    assert hc._current.captured.method == "export"


def test_bf16_autocast_cpu() -> None:
    w = zoo.build("mlp", "small", overrides=dict(batch=4, d=16, n_layers=4))
    model = w.model
    ref = clone_model(model)
    cap = fx_capture(model)
    bounds = even_bounds(cap.gm, 5)
    ex = Executor(cap, model, bounds, trees(len(bounds))["nested"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        la = ex(*w.args)
    la.backward()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lb = ref(*w.args)
    lb.backward()
    assert torch.equal(la, lb)
    assert_same_grads(model, ref)
    assert ex.tracker.acct.n_recompute > 0


def test_repeated_steps_hold_no_memory() -> None:
    w = zoo.build("resnet", "small", overrides=dict(batch=2, image=16))
    hc = HCModule(w.model, 0.5, track_memory=True)
    peaks = []
    for _ in range(4):
        hc(*w.args).backward()
        gc.collect()
        assert hc._tracker.acct.live_bytes == 0 and hc._tracker.acct.n_live == 0
        peaks.append(hc.last_step_stats().measured_peak_bytes)
    assert len(set(peaks)) == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from tests import _runtime_dev
    from tiny_backprop import hc_module

    if not _runtime_dev.have_planner():
        hc_module._make_plan = _runtime_dev.dev_plan
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world)
    w = zoo.build("mlp", "small", overrides=dict(batch=8, d=16, n_layers=4))
    x, y = w.args
    model = DDP(HCModule(w.model, 0.5))
    n = x.shape[0] // world
    model(x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]).backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in w.model.named_parameters()},
                   os.path.join(out_dir, "grads.pt"))
    dist.destroy_process_group()


def test_ddp_two_processes_match_one(tmp_path) -> None:
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    got = torch.load(tmp_path / "grads.pt")
    w = zoo.build("mlp", "small", overrides=dict(batch=8, d=16, n_layers=4))
    x, y = w.args
    # DDP averages the two half-batch gradients: the reference does the same.
    for half in (slice(0, 4), slice(4, 8)):
        (w.model(x[half], y[half]) / 2).backward()
    for k, p in w.model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-6, atol=1e-7)
