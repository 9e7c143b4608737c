"""Trace one eager forward of a model without activation memory.

The model's own ``forward`` runs on fake tensors (``FakeTensorMode``): parameters,
buffers and inputs are replaced by fake copies (``torch.func.functional_call``), a
``TorchDispatchMode`` records every aten op (its innermost module call, output bytes,
FLOPs, flags) and a saved-tensor pack hook records what autograd would save, keeping
nothing. Module calls are seen through forward pre/post hooks added for the trace and
removed afterwards.

Models whose ops have no fake kernel (a data-dependent output shape, a custom op) are
traced on real tensors instead (``method="real"``): the same hooks, but the pack hook
drops every saved tensor, so the forward holds about what a ``torch.no_grad`` forward
holds; the model's buffers, Python attributes and RNG state are restored afterwards.

The model is left as it was: train flags, buffers, parameters, RNG, module attributes.
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import nn
from torch.autograd.graph import saved_tensors_hooks
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from .types import CallRecord, OpRecord, OpSignature, TensorMeta, Trace

_PLAIN = (int, float, bool, str, type(None), torch.dtype, torch.device, torch.memory_format,
          torch.layout)

logger = logging.getLogger("tiny_backprop")


class _StorageIds:
    """Stable small ids for storages seen during a trace (no storage is kept alive)."""

    def __init__(self) -> None:
        self._live: dict[int, tuple[int, weakref.ref]] = {}
        self._next = 1

    def key(self, t: torch.Tensor) -> tuple[int, int]:
        """(id, bytes) of `t`'s storage."""
        s = t.untyped_storage()
        addr = s._cdata
        hit = self._live.get(addr)
        if hit is not None and hit[1]() is s:
            return hit[0], s.nbytes()
        sid = self._next
        self._next += 1
        self._live[addr] = (sid, weakref.ref(s))
        return sid, s.nbytes()


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [v for v in pytree.tree_leaves(tree) if isinstance(v, torch.Tensor)]


def _writes_only_self(func: Any) -> bool:
    """The op writes its first argument in place, nothing else, and returns it."""
    args = func._schema.arguments
    if not args or args[0].alias_info is None or not args[0].alias_info.is_write:
        return False
    if any(a.alias_info is not None and a.alias_info.is_write for a in args[1:]):
        return False
    rets = func._schema.returns
    return len(rets) == 1 and rets[0].alias_info is not None


class _Recorder(TorchDispatchMode):
    """Dispatch mode + hooks of one trace."""

    def __init__(self, paths: dict[int, str], state_ids: set[int], ids: _StorageIds) -> None:
        super().__init__()
        self.paths = paths
        self.state_ids = state_ids
        self.ids = ids
        self.trace = Trace()
        self.stack: list[int] = []  # open calls (indices)
        self.counts: dict[str, int] = {}
        self.call_counts: dict[str, int] = {}
        self.seen: set[int] = set()
        self.sig_index: dict[tuple, int] = {}
        self.watch: dict[int, weakref.finalize] = {}

    def _freed(self, sid: int) -> None:
        self.trace.freed[sid] = len(self.trace.ops)

    def stop_watching(self) -> None:
        """Detach the free callbacks of storages still alive (they live to the end)."""
        for f in self.watch.values():
            f.detach()
        self.watch.clear()

    # -- storages ---------------------------------------------------------------

    def _keys(self, tensors: list[torch.Tensor]) -> dict[int, int]:
        out: dict[int, int] = {}
        for t in tensors:
            sid, nbytes = self.ids.key(t)
            if sid not in self.state_ids:
                out[sid] = nbytes
        return out

    # -- ops ----------------------------------------------------------------------

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = str(func.overloadpacket)
        if name.startswith("prim."):  # metadata queries (prim.device): not computation
            return out
        occ = self.counts.get(name, 0)
        self.counts[name] = occ + 1
        outs = _tensors(out)
        new_bytes = 0
        for t in outs:
            sid, nbytes = self.ids.key(t)
            if sid in self.state_ids or sid in self.seen:
                continue
            self.seen.add(sid)
            self.trace.produced[sid] = len(self.trace.ops)
            self.trace.storage_bytes[sid] = nbytes
            new_bytes += nbytes
            # when it dies (saved tensors are not kept)
            self.watch[sid] = weakref.finalize(t.untyped_storage(), self._freed, sid)
        flops = 0
        fn = flop_registry.get(func.overloadpacket)
        if fn is not None:
            try:
                flops = int(fn(*args, **kwargs, out_val=out))
            except Exception:  # a formula that does not fit these arguments
                flops = 0
        tags = getattr(func, "tags", ())
        inplace = bool(func._schema.is_mutable)
        call = self.stack[-1] if self.stack else -1
        sig = self._signature(func, args, kwargs)
        self_write = 0
        if inplace and _writes_only_self(func) and args and isinstance(args[0], torch.Tensor):
            self_write = self.ids.key(args[0])[1]
        if inplace and self.stack:
            written = self._keys(_tensors(args))
            for c in self.stack:
                rec = self.trace.calls[c]
                if any(k in rec.input_keys for k in written):
                    rec.mutates_input = True
        grad_in, param_in = self._grad_inputs(args, kwargs)
        self.trace.ops.append(OpRecord(
            index=len(self.trace.ops), name=name, call=call, occurrence=occ,
            out_bytes=new_bytes, flops=flops, elements=sum(t.numel() for t in outs),
            random=torch.Tag.nondeterministic_seeded in tags, inplace=inplace,
            data_dependent=torch.Tag.data_dependent_output in tags, sig=sig,
            self_write_bytes=self_write, grad_inputs=grad_in,
            param_grad_bytes=sum(b for _, b in param_in), param_grad_inputs=param_in))
        return out

    def _grad_inputs(self, args: Any, kwargs: Any
                     ) -> tuple[tuple[tuple[int, int], ...], tuple[tuple[int, int], ...]]:
        """(storage key, bytes) of the activation inputs that require grad, and of the
        parameter inputs that do (bytes of the tensor read)."""
        acts: dict[int, int] = {}
        params: dict[int, int] = {}
        for t in _tensors((args, kwargs)):
            if not (t.requires_grad and t.is_floating_point()):
                continue
            sid, nbytes = self.ids.key(t)
            if sid in self.state_ids:
                params[sid] = max(params.get(sid, 0), t.numel() * t.element_size())
            else:
                acts[sid] = nbytes
        return tuple(acts.items()), tuple(params.items())

    def _signature(self, func: Any, args: Any, kwargs: Any) -> int:
        """Index of this op call's signature (tensors as metadata), -1 if unrecordable."""
        leaves, spec = pytree.tree_flatten((args, kwargs))
        metas = []
        for v in leaves:
            if isinstance(v, torch.Tensor):
                metas.append(TensorMeta(tuple(int(d) for d in v.shape), v.dtype,
                                        str(v.device)))
            elif isinstance(v, _PLAIN):
                metas.append(v)
            else:
                return -1
        key = (str(func), tuple(metas), str(spec))
        idx = self.sig_index.get(key)
        if idx is None:
            idx = len(self.trace.signatures)
            self.sig_index[key] = idx
            self.trace.signatures.append(OpSignature(func, tuple(metas), spec, key))
        return idx

    # -- saved tensors -------------------------------------------------------------

    def pack(self, t: torch.Tensor) -> None:
        sid, nbytes = self.ids.key(t)
        state = sid in self.state_ids
        call = self.stack[-1] if self.stack else -1
        if not state:
            self.trace.saved_order.append((sid, nbytes, call, len(self.trace.ops)))
        for c in self.stack:
            rec = self.trace.calls[c]
            rec.n_packs += 1  # every pack (parameters too): the runtime's count
            if not state:
                rec.saved[sid] = nbytes
        return None

    # -- module calls ----------------------------------------------------------------

    def pre_hook(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        path = self.paths.get(id(module))
        if path is None:
            return None
        occ = self.call_counts.get(path, 0)
        self.call_counts[path] = occ + 1
        rec = CallRecord(index=len(self.trace.calls), path=path, occurrence=occ,
                         parent=self.stack[-1] if self.stack else -1,
                         first_op=len(self.trace.ops),
                         input_keys=self._keys(_tensors((args, kwargs))))
        self.trace.calls.append(rec)
        self.stack.append(rec.index)
        return None

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, out: Any) -> None:
        path = self.paths.get(id(module))
        if path is None or not self.stack:
            return None
        rec = self.trace.calls[self.stack.pop()]
        rec.end_op = len(self.trace.ops)
        rec.end_call = len(self.trace.calls)
        rec.output_keys = self._keys(_tensors(out))
        return None


def _unpack_never(_: object) -> torch.Tensor:
    raise RuntimeError("tiny_backprop: a trace's autograd graph was used for backward")


@contextmanager
def _module_hooks(model: nn.Module, rec: _Recorder) -> Iterator[None]:
    handles = []
    try:
        for m in model.modules():
            handles.append(m.register_forward_pre_hook(rec.pre_hook, with_kwargs=True))
            handles.append(m.register_forward_hook(rec.post_hook, with_kwargs=True,
                                                   always_call=True))
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def preserved_python_state(model: nn.Module) -> Iterator[None]:
    """Restore train flags, public module attributes, list contents and RNG on exit."""
    modes = [(m, m.training) for m in model.modules()]
    attrs = [(m, {k: v for k, v in vars(m).items() if not k.startswith("_")})
             for m in model.modules()]
    lists = {id(v): (v, list(v)) for _, d in attrs for v in d.values() if isinstance(v, list)}
    cpu_rng = torch.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        for m, flag in modes:
            m.training = flag
        for m, saved in attrs:
            for k in [k for k in vars(m) if not k.startswith("_") and k not in saved]:
                del m.__dict__[k]
            for k, v in saved.items():
                if m.__dict__.get(k) is not v:
                    m.__dict__[k] = v
        for lst, items in lists.values():
            if len(lst) != len(items) or any(a is not b for a, b in zip(lst, items)):
                lst[:] = items
        torch.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def _paths(model: nn.Module) -> dict[int, str]:
    out: dict[int, str] = {}
    for name, m in model.named_modules():
        out.setdefault(id(m), name)
    return out


def _state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return {**dict(model.named_parameters(remove_duplicate=False)),
            **dict(model.named_buffers(remove_duplicate=False))}


def _run(model: nn.Module, rec: _Recorder, call: Any) -> Any:
    with ExitStack() as stack:
        stack.callback(rec.stop_watching)
        stack.enter_context(_module_hooks(model, rec))
        stack.enter_context(torch.enable_grad())
        stack.enter_context(saved_tensors_hooks(rec.pack, _unpack_never))
        stack.enter_context(rec)
        return call()


def trace_fake(model: nn.Module, args: tuple, kwargs: dict) -> Trace:
    """Trace ``model(*args, **kwargs)`` on fake tensors (no activation memory).

    Raises:
        Exception: whatever the model's forward raises under FakeTensorMode (an op with
            no fake kernel, a data-dependent shape).
    """
    from torch._subclasses.fake_tensor import FakeTensorMode

    t0 = time.perf_counter()
    ids = _StorageIds()
    fake = FakeTensorMode(allow_non_fake_inputs=True)
    state = _state_tensors(model)
    fstate = {k: fake.from_tensor(v) for k, v in state.items()}
    state_ids = {ids.key(v)[0] for v in fstate.values()}
    leaves, spec = pytree.tree_flatten((args, kwargs))
    fleaves = [fake.from_tensor(v) if isinstance(v, torch.Tensor) else v for v in leaves]
    fargs, fkwargs = pytree.tree_unflatten(fleaves, spec)
    rec = _Recorder(_paths(model), state_ids, ids)
    rec.trace.input_bytes = sum(rec._keys(_tensors(fleaves)).values())
    with preserved_python_state(model), fake:
        out = _run(model, rec, lambda: torch.func.functional_call(
            model, fstate, tuple(fargs), dict(fkwargs), tie_weights=True, strict=False))
        rec.trace.output_bytes = sum(rec._keys(_tensors(out)).values())
        del out
    trace = rec.trace
    trace.method = "fake"
    trace.seconds = time.perf_counter() - t0
    return trace


def trace_real(model: nn.Module, args: tuple, kwargs: dict) -> Trace:
    """Trace ``model(*args, **kwargs)`` on real tensors, keeping no saved tensor.

    Peak memory is about a ``torch.no_grad`` forward's. Buffers written by the forward
    (BatchNorm running statistics) are copied before and restored after.
    """
    t0 = time.perf_counter()
    ids = _StorageIds()
    state = _state_tensors(model)
    state_ids = {ids.key(v)[0] for v in state.values()}
    buffers = [(b, b.detach().clone()) for b in model.buffers()]
    rec = _Recorder(_paths(model), state_ids, ids)
    rec.trace.input_bytes = sum(rec._keys(_tensors((args, kwargs))).values())
    try:
        with preserved_python_state(model):
            out = _run(model, rec, lambda: model(*args, **kwargs))
            rec.trace.output_bytes = sum(rec._keys(_tensors(out)).values())
            del out
    finally:
        with torch.no_grad():
            for b, saved in buffers:
                b.copy_(saved)
    trace = rec.trace
    trace.method = "real"
    trace.seconds = time.perf_counter() - t0
    return trace


def _distributed(model: nn.Module) -> bool:
    """Parameters managed by FSDP2 / DTensor: their hooks swap parameters around forward,
    which a fake-tensor `functional_call` must not race."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return any(isinstance(p, DTensor) for p in model.parameters()) or any(
        type(m).__name__.startswith("FSDP") for m in model.modules())


@contextmanager
def _quiet_fake_tensor_log() -> Iterator[None]:
    """torch logs a failed fake kernel at ERROR level; the failure is handled here (the
    real-tensor trace follows, logged once at INFO), so keep torch's line out."""
    log = logging.getLogger("torch._subclasses.fake_tensor")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def trace_model(model: nn.Module, args: tuple, kwargs: dict) -> Trace:
    """A trace of one training forward: on fake tensors, else on real ones (logged).

    FSDP2-sharded models are traced on real tensors (their forward hooks all-gather
    parameters, which fake tensors cannot), keeping no saved tensor."""
    if _distributed(model):
        return trace_real(model, args, kwargs)
    try:
        with _quiet_fake_tensor_log():
            return trace_fake(model, args, kwargs)
    except Exception as exc:  # no fake kernel, data-dependent shapes, ...
        logger.info("tiny_backprop: tracing %s on fake tensors failed (%s: %s); tracing on "
                    "real tensors, keeping no saved tensor", type(model).__name__,
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        return trace_real(model, args, kwargs)
