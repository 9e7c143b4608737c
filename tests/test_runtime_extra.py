"""HCModule under DistributedDataParallel (2 CPU processes, gloo, each with a deadline)."""

from __future__ import annotations

import os
import socket

import torch

from tiny_backprop import HCModule, zoo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    from datetime import timedelta

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    w = zoo.build("mlp", "small", overrides=dict(batch=8, d=16, n_layers=6))
    x, y = w.args
    model = DDP(HCModule(w.model, 0.6))
    n = x.shape[0] // world
    model(x[rank * n:(rank + 1) * n], y[rank * n:(rank + 1) * n]).backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in w.model.named_parameters()},
                   os.path.join(out_dir, "grads.pt"))
    dist.destroy_process_group()


def test_ddp_two_processes_match_one(tmp_path) -> None:
    import torch.multiprocessing as mp

    ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2,
                             join=False, start_method="spawn")
    deadline = 120.0
    import time
    t0 = time.monotonic()
    while not ctx.join(timeout=5):
        if time.monotonic() - t0 > deadline:
            for p in ctx.processes:
                p.kill()
            raise AssertionError("DDP workers did not finish within 120 s")
    got = torch.load(tmp_path / "grads.pt")
    w = zoo.build("mlp", "small", overrides=dict(batch=8, d=16, n_layers=6))
    x, y = w.args
    # DDP averages the two half-batch gradients: the reference does the same.
    for half in (slice(0, 4), slice(4, 8)):
        (w.model(x[half], y[half]) / 2).backward()
    for k, p in w.model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, rtol=1e-6, atol=1e-7)
