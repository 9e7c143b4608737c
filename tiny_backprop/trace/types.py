"""What a trace of one eager forward records: ops, module calls, saved tensors (bytes)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class OpRecord:
    """One aten op of the traced forward.

    Attributes:
        index: position in the forward (0-based).
        name: the op's overload packet, e.g. ``"aten.mm"``.
        call: index of the innermost module call running it (-1: none).
        occurrence: how many ops of this name ran before it in the whole forward.
        out_bytes: bytes of output storages new at this op (storages counted once).
        flops: FLOPs (torch's flop registry), 0 where the registry has no formula.
        elements: number of output elements.
        random: the op draws random numbers (``nondeterministic_seeded``).
        inplace: the op writes one of its inputs (mutable schema).
        data_dependent: the output's shape depends on values (``data_dependent_output``).
        sig: index of its (op, argument shapes) signature in ``Trace.signatures``.
        self_write_bytes: for an op that writes only its first argument in place and
            returns it (``bernoulli_``, ``div_``), that argument's storage bytes (what
            keeping its result holds); 0 otherwise.
        grad_inputs: (storage key, bytes) of its activation inputs that require grad
            (floating point, storages once): its backward makes their gradients.
        param_grad_bytes: bytes of its parameter inputs that require grad (its backward
            makes a gradient of each before it is accumulated into ``.grad``).
        param_grad_inputs: (storage key, bytes) of those parameter inputs.
    """

    index: int
    name: str
    call: int
    occurrence: int
    out_bytes: int
    flops: int
    elements: int
    random: bool = False
    inplace: bool = False
    data_dependent: bool = False
    sig: int = -1  # index into Trace.signatures (-1: not recorded)
    self_write_bytes: int = 0  # an in-place op writing only its first argument: its bytes
    grad_inputs: tuple[tuple[int, int], ...] = ()
    param_grad_bytes: int = 0
    param_grad_inputs: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True)
class TensorMeta:
    """What a tensor argument looked like: enough to make one of the same kind."""

    shape: tuple[int, ...]
    dtype: object  # torch.dtype
    device: str


@dataclass(frozen=True)
class OpSignature:
    """One distinct op call: the op and its arguments with tensors as `TensorMeta`.

    Attributes:
        op: the aten OpOverload (callable).
        leaves: flattened (args, kwargs) with tensors replaced by TensorMeta.
        spec: the pytree spec to rebuild (args, kwargs).
        key: hashable identity (op name, leaves).
    """

    op: object
    leaves: tuple
    spec: object
    key: tuple


@dataclass
class CallRecord:
    """One module call of the traced forward.

    Attributes:
        index: position among calls in the order they started.
        path: the module's qualified name in the model ("" = the model itself).
        occurrence: how many calls of this module started before it.
        parent: index of the enclosing call (-1: none).
        first_op, end_op: ops ``first_op .. end_op - 1`` ran inside it (nested calls too).
        input_keys: storage keys of its tensor inputs (activations only) -> bytes.
        output_keys: storage keys of its tensor outputs (activations only) -> bytes.
        n_packs: saved tensors packed while it ran (nested calls included).
        saved: storage key -> bytes of every activation saved while it ran.
        mutates_input: an op inside it wrote one of its tensor inputs in place.
        end_call: calls ``index + 1 .. end_call - 1`` are nested inside it.
    """

    index: int
    path: str
    occurrence: int
    parent: int
    first_op: int
    end_op: int = -1
    input_keys: dict[int, int] = field(default_factory=dict)
    output_keys: dict[int, int] = field(default_factory=dict)
    n_packs: int = 0
    saved: dict[int, int] = field(default_factory=dict)
    mutates_input: bool = False
    end_call: int = -1


@dataclass
class Trace:
    """The record of one forward on fake tensors (or, as a fallback, real tensors).

    Attributes:
        ops: every aten op in order.
        calls: every module call in start order.
        input_bytes: bytes of the forward's tensor inputs (activations, storages once).
        output_bytes: bytes of the forward's tensor outputs.
        saved_order: (storage key, bytes, innermost call, ops run so far) of every saved
            tensor in pack order; parameters and buffers are left out.
        produced: storage key -> index of the op whose output first had that storage.
        storage_bytes: storage key -> bytes, of the storages in `produced`.
        freed: storage key -> ops run when that storage died in the traced forward (the
            trace keeps no saved tensor, so this is when the model's code and the ops
            after it let go of it); absent: alive at the end of the forward.
        method: "fake" (FakeTensorMode) or "real" (real tensors, nothing saved kept).
        signatures: the distinct (op, argument metadata) of the ops, for timing them.
        seconds: wall time of the trace (seconds).
    """

    ops: list[OpRecord] = field(default_factory=list)
    calls: list[CallRecord] = field(default_factory=list)
    input_bytes: int = 0
    output_bytes: int = 0
    saved_order: list[tuple[int, int, int, int]] = field(default_factory=list)
    produced: dict[int, int] = field(default_factory=dict)
    storage_bytes: dict[int, int] = field(default_factory=dict)
    freed: dict[int, int] = field(default_factory=dict)
    method: str = "fake"
    seconds: float = 0.0
    signatures: list[OpSignature] = field(default_factory=list)

    @property
    def saved_bytes(self) -> int:
        """Bytes of all saved activations (storages counted once)."""
        return sum(dict((k, b) for k, b, _, _ in self.saved_order).values())

    def calls_of(self, path: str) -> list[CallRecord]:
        """The calls of one module, in order."""
        return [c for c in self.calls if c.path == path]
