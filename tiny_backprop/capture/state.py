"""Save and restore everything a measuring forward could change in a user's model."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def preserved_model_state(model: torch.nn.Module) -> Iterator[None]:
    """Restore, on exit, what running ``model`` forward could change.

    Restored: every submodule's ``training`` flag, every buffer's value (BatchNorm
    running stats, ``num_batches_tracked``), every parameter's value and ``.grad``
    object, the global CPU RNG state and, when CUDA is initialised, every CUDA
    device's RNG state. Restoring copies values in place, so tensors keep their
    identity (optimizers and the runtime still hold the same objects).
    """
    modes = [(m, m.training) for m in model.modules()]
    attrs = [(m, {k: v for k, v in vars(m).items() if not k.startswith("_")})
             for m in model.modules()]
    lists = {id(v): (v, list(v)) for _, d in attrs for v in d.values() if isinstance(v, list)}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    params = [(p, p.detach().clone(), p.grad) for p in model.parameters()]
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag
        for m, saved_attrs in attrs:
            for k, v in saved_attrs.items():
                if m.__dict__.get(k) is not v:
                    m.__dict__[k] = v
        for lst, items in lists.values():
            if len(lst) != len(items) or any(a is not b for a, b in zip(lst, items)):
                lst[:] = items
        with torch.no_grad():
            for b, saved in buffers:
                if not torch.equal(b, saved):
                    b.copy_(saved)
            for p, saved, grad in params:
                if not torch.equal(p, saved):
                    p.copy_(saved)
                p.grad = grad
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
