"""The chain the planner sees, built from a trace: the model's repeated block calls.

The blocks are the children of the nn.ModuleList / nn.Sequential whose children hold the
most parameters (``model.layers``, HF's ``transformer.h``, ``model.model.layers``); a
model without one is planned over its top-level submodule calls. The chain is
``[pre] + block calls + [post]``: ``pre`` is the code before the first block and between
blocks, ``post`` the code after the last; both are always kept.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from torch import nn

from .runtime.spec import CallRef, RegionSpec, RuntimePlan
from .trace.types import CallRecord, OpRecord, Trace
from .tree import Keep, Node, Region

#: FLOP-equivalents charged per output element of an op without a FLOP formula
#: ("measured": op times in seconds on the device, `tiny_backprop.costs`).
COST_MODELS = {"flops": 1.0, "elements10": 10.0, "measured": 0.0}

#: FLOP-equivalents per element of an op that draws random numbers (a dropout mask's
#: ``bernoulli_``). Measured 2026-12-02 (CPU, torch 2.13.0, 1 thread, `costs.measure` on
#: zoo gpt2 medium): ``bernoulli_`` of 1,048,576 elements 5.10 ms, the block's qkv
#: ``addmm`` (403 MFLOP) 5.34 ms, so ~385 FLOP-equivalents per element.
RANDOM_ELEMENT_FLOPS = 400.0


#: Ops whose backward gives their inputs views of their output's gradient (so that
#: gradient lives as long as the longest-lived of those).
VIEW_GRAD_OPS = frozenset({"aten.cat", "aten.stack"})
#: Ops whose backward passes their output's gradient itself to each input of the
#: output's size (a residual add): one storage, not one per input.
ALIAS_GRAD_OPS = frozenset({"aten.add"})


def flop_cost(op: OpRecord, weight: float) -> float:
    """Cost of one op in FLOP-equivalents: its FLOPs; a random op `RANDOM_ELEMENT_FLOPS`
    per output element; any other op without a FLOP formula `weight` per element."""
    if op.random:
        return RANDOM_ELEMENT_FLOPS * op.elements
    return float(op.flops) if op.flops else weight * op.elements


@dataclass(frozen=True)
class BlockChain:
    """The per-block chain of one trace (stage 0 = pre, 1..L = block calls, L+1 = post).

    Attributes:
        container: qualified name of the container of the blocks ("" = the model's
            top-level submodules).
        calls: the block calls, in order (trace records).
        forward_cost, backward_cost: per stage (FLOP-equivalents; backward = 2x).
        input_bytes: per stage, x_i: bytes of its tensor inputs (activations, storages
            once); x_0 = the model's inputs.
        saved_bytes: per stage, g_i: bytes it saves for backward besides its boundary
            tensors (a block writing an input in place is charged twice its inputs).
        must_keep: per stage, True for pre and post.
        store_all_bytes: held bytes of the trace's store-all step (every saved tensor).
        live_intervals: (producer stage, last user stage, bytes) of the boundary
            storages (the planner's DAG accounting: a tensor shared by many blocks counts
            once).
        nested: per stage, the sub-module calls of the block that run as nested regions
            of their own (``block_chain(..., nested=True)``); empty otherwise. Then g_i is
            what the block holds with them (its other saved tensors, their inputs, and
            the largest one's saved tensors while it is recomputed) and b_i includes
            their forward, run again in backward.
        working_bytes: per stage, w_i: the most bytes its backward needs beyond g_i
            (gradients in flight, less the saved tensors already freed; `working_bytes`);
            empty = none recorded.
        cut_before: per stage, True where no region may span the boundary before it: a
            block input made by code between the blocks (a U-Net's cat of a skip), which
            a region's recomputation cannot re-make, so the runtime holds it from when it
            is made either way; empty = none.
    """

    container: str
    calls: tuple[CallRecord, ...]
    forward_cost: tuple[float, ...]
    backward_cost: tuple[float, ...]
    input_bytes: tuple[int, ...]
    saved_bytes: tuple[int, ...]
    must_keep: tuple[bool, ...]
    store_all_bytes: int
    live_intervals: tuple[tuple[int, int, int], ...] = ()
    nested: tuple[tuple[CallRecord, ...], ...] = ()
    working_bytes: tuple[int, ...] = ()
    cut_before: tuple[bool, ...] = ()

    @property
    def never_recompute(self) -> list[bool]:
        return list(self.must_keep)

    def __len__(self) -> int:
        return len(self.forward_cost)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def _top_calls(trace: Trace, paths: set[str]) -> list[CallRecord]:
    """Calls of `paths` not nested in another call of `paths`, in order."""
    out: list[CallRecord] = []
    end = -1
    for c in trace.calls:
        if c.index < end:
            continue
        if c.path in paths:
            out.append(c)
            end = c.end_call
    return out


def find_block_calls(model: nn.Module, trace: Trace) -> tuple[str, list[CallRecord]]:
    """(container name, block calls): the chain's blocks as seen in the trace."""
    called = {c.path for c in trace.calls}
    best: tuple[tuple[int, int, int], str, set[str]] | None = None
    for name, m in model.named_modules():
        if not isinstance(m, (nn.ModuleList, nn.Sequential)) or len(m) < 2:
            continue
        prefix = f"{name}." if name else ""
        kids = {prefix + k for k, _ in m.named_children()} & called
        if len(kids) < 2:
            continue
        score = (sum(_n_params(c) for k, c in m.named_children() if prefix + k in kids),
                 len(kids), -name.count("."))
        if best is None or score > best[0]:
            best = (score, name, kids)
    if best is not None:
        calls = _top_calls(trace, best[2])
        if len(calls) >= 2:
            return best[1], calls
    root = trace.calls[0] if trace.calls and trace.calls[0].path == "" else None
    kids = [c for c in trace.calls if root is not None and c.parent == root.index]
    return "", kids


def _nested_children(trace: Trace, call: CallRecord, saved: dict[int, int],
                     boundary: dict[int, int]) -> tuple[list[CallRecord], int]:
    """Sub-module calls of `call` worth a region of their own, and the block's g with
    them (bytes). `saved`: the block's saved storages (boundaries left out)."""
    kids = [c for c in trace.calls[call.index + 1:call.end_call] if c.parent == call.index]
    total = sum(saved.values())
    chosen: list[tuple[CallRecord, dict[int, int]]] = []
    for c in kids:
        own = {k: b for k, b in c.saved.items() if k in saved}
        ins = sum(b for k, b in c.input_keys.items() if k not in boundary)
        if sum(own.values()) >= max(2 * ins, 0.05 * total) and sum(own.values()) > 0:
            chosen.append((c, own))
    if not chosen:
        return [], total
    inside: set[int] = set()
    for _, own in chosen:
        inside.update(own)
    rest = sum(b for k, b in saved.items() if k not in inside)
    inputs = sum(b for c, _ in chosen for k, b in c.input_keys.items() if k not in boundary)
    peak = max(sum(own.values()) for _, own in chosen)
    return [c for c, _ in chosen], rest + inputs + peak


def block_chain(model: nn.Module, trace: Trace, cost_model: str = "flops",
                op_costs: list[float] | None = None, nested: bool = False,
                scratch: dict[int, tuple[int, int]] | None = None) -> BlockChain:
    """The chain ``[pre] + blocks + [post]`` of a trace (bytes; FLOP-equivalents, or
    the unit of `op_costs`, per op index, when given). `nested`: blocks recompute their
    large sub-module calls as nested regions (`BlockChain.nested`). `scratch`: op index
    -> (forward, backward) scratch bytes (`tiny_backprop.scratch.measure_scratch`),
    counted in the working bytes."""
    weight = COST_MODELS[cost_model]
    container, calls = find_block_calls(model, trace)
    n = len(calls)
    owner: dict[int, int] = {}  # innermost call index -> stage
    for k, c in enumerate(calls):
        for i in range(c.index, c.end_call):
            owner[i] = k + 1
    end_last = calls[-1].end_op if calls else 0

    def stage_at(call: int, pos: int) -> int:
        """Stage of work done inside `call` after `pos` ops (pre/post outside blocks)."""
        st = owner.get(call, -1)
        if st >= 0:
            return st
        return n + 1 if n and pos >= end_last else 0

    cost = [0.0] * (n + 2)
    for op in trace.ops:
        cost[stage_at(op.call, op.index)] += (
            op_costs[op.index] if op_costs is not None else flop_cost(op, weight))
    # block inputs (and the last block's outputs) are the chain's boundaries; every other
    # saved storage is charged once, to the stage whose op saved it (code between blocks
    # to pre, code after the last block to post), a skip connection saved between blocks
    # included
    boundary: dict[int, int] = {}
    for c in calls:
        boundary.update(c.input_keys)
    if calls:
        boundary.update(calls[-1].output_keys)
    saved = [0] * (n + 2)
    per_stage: list[dict[int, int]] = [{} for _ in range(n + 2)]
    seen: set[int] = set()
    for sid, nbytes, call, pos in trace.saved_order:
        if sid in seen or sid in boundary:
            continue
        seen.add(sid)
        st = stage_at(call, pos)
        saved[st] += nbytes
        per_stage[st][sid] = nbytes
    kids: list[tuple[CallRecord, ...]] = [()] * (n + 2)
    back = [2.0 * f for f in cost]
    apart: set[int] = set()  # saved storages of the sub-module calls recomputed apart
    if nested:
        for k, c in enumerate(calls):
            chosen, g = _nested_children(trace, c, per_stage[k + 1], boundary)
            if chosen:
                kids[k + 1] = tuple(chosen)
                saved[k + 1] = g
                apart.update(sid for ch in chosen for sid in ch.saved if sid in per_stage[k + 1])
                back[k + 1] += sum(
                    op_costs[op.index] if op_costs is not None else flop_cost(op, weight)
                    for ch in chosen for op in trace.ops[ch.first_op:ch.end_op])
    x = [trace.input_bytes] + [sum(c.input_keys.values()) for c in calls]
    x.append(sum(calls[-1].output_keys.values()) if calls else trace.output_bytes)
    for k, c in enumerate(calls):
        if c.mutates_input:
            saved[k + 1] += 2 * x[k + 1]
    # live intervals: a boundary storage is produced in stage j and last read by stage u;
    # one shared by several blocks (an attention mask) counts once, not at every boundary
    live: dict[tuple[int, int], int] = {}
    ops = trace.ops
    # a block input made by code between blocks (a U-Net's cat of a skip) counts from
    # the block before it, and no region spans the boundary of a block that reads it: a
    # region's recomputation cannot re-make it (the code between blocks is not in the
    # region), so the runtime holds it from when it is made to that block's backward
    cut = [False] * (n + 2)
    for sid, nbytes in boundary.items():
        at = trace.produced.get(sid)
        if at is None:
            continue  # a model input: held all step as part of x_0
        j = stage_at(ops[at].call, at)
        users = [k + 1 for k, c in enumerate(calls) if sid in c.input_keys]
        if j == 0 and calls and at >= calls[0].first_op:
            j = sum(1 for c in calls if c.end_op <= at)  # the stage of the block before
            for k in users:
                cut[k] = True
        if calls and sid in calls[-1].output_keys:
            users.append(n + 1)
        u = max(users, default=j)
        if u > j:
            live[(j, u)] = live.get((j, u), 0) + nbytes
    intervals = tuple((j, u, b) for (j, u), b in sorted(live.items()))
    # the backward of code between blocks runs right after that of the block after it,
    # before that of the block before it (whose saved tensors a region has not
    # recomputed yet): its working bytes count in the former's, once its saved tensors
    # are freed
    ends = sorted(c.end_op for c in calls)
    stage_of = [bisect.bisect_right(ends, op.index) + 1 if st == 0 and calls
                and calls[0].first_op <= op.index < end_last else st
                for op, st in ((op, stage_at(op.call, op.index)) for op in ops)]
    # a nested block's g already counts its largest sub-module call's saved bytes: only
    # its other saved tensors are freed as its backward runs
    saved_at = [(sid, nbytes, stage_at(call, pos), pos) for sid, nbytes, call, pos
                in trace.saved_order if sid not in boundary and sid not in apart]
    grads = gradients_live(trace, scratch)
    work = working_bytes(trace, stage_of, saved_at, n + 2, grads)
    if trace.ops:
        # a recomputed block holds its saved tensors, what its code holds on to and the
        # gradients in flight at once: a stage's w covers that too (a nested block's
        # recomputation runs its sub-module calls apart: left as it is)
        again = recompute_bytes(trace, calls, per_stage, grads, scratch)
        work = [w if kids[s] else max(w, again[s]) for s, w in enumerate(work)]
    return BlockChain(
        container=container, calls=tuple(calls),
        forward_cost=tuple(cost), backward_cost=tuple(back),
        input_bytes=tuple(x), saved_bytes=tuple(saved),
        must_keep=(True,) + (False,) * n + (True,),
        store_all_bytes=trace.input_bytes + trace.saved_bytes,
        live_intervals=intervals, nested=tuple(kids) if nested else (),
        working_bytes=tuple(work) if any(work) else (),
        cut_before=tuple(cut) if any(cut) else ())


def gradients_live(trace: Trace, scratch: dict[int, tuple[int, int]] | None = None
                   ) -> tuple[list[int], list[int], list[int]]:
    """Per op of `trace` (forward order): the bytes of activation gradients live while
    its backward runs, the bytes of the parameter gradients (and of `scratch`, op index
    -> (forward, backward) bytes) it makes there before they are accumulated (see
    `working_bytes`), and the bytes of the activation gradients among the first that it
    makes (not live before it runs)."""
    ops = trace.ops
    n = len(ops)
    readers: dict[int, list[int]] = {}
    size: dict[int, int] = {}
    for op in ops:
        for sid, nbytes in op.grad_inputs:
            readers.setdefault(sid, []).append(op.index)
            size[sid] = nbytes
    last = {sid: r[-1] for sid, r in readers.items()}
    start = {sid: trace.produced.get(sid, 0) for sid in last}  # a model input: from 0
    # the gradients a cat's backward gives its inputs are views of its output's: that
    # storage lives until the last of them is used up, at its producer's backward, and
    # an input's own gradient storage starts at its next reader's backward (where the
    # view is added to), if any
    made: dict[int, list[int]] = {}
    for sid, at in trace.produced.items():
        made.setdefault(at, []).append(sid)
    for op in ops:
        shared = (op.grad_inputs if op.name in VIEW_GRAD_OPS else
                  tuple(g for g in op.grad_inputs if g[1] == op.out_bytes)
                  if op.name in ALIAS_GRAD_OPS and op.out_bytes else ())
        if shared:
            # each input's view is used up where autograd adds it to that input's other
            # gradients (a new tensor): at the op's own backward if a later op reads the
            # input too, else at that of the input's reader just before it, else (no
            # other reader) at its producer's
            points = []
            for sid, _ in shared:
                if readers[sid][-1] > op.index:
                    points.append(op.index)
                    continue
                earlier = [i for i in readers[sid] if i < op.index]
                points.append(earlier[-1] if earlier else start.get(sid, 0))
            first = min(points)
            for sid in made.get(op.index, ()):
                if sid in start:
                    start[sid] = min(start[sid], first)
            for sid, _ in shared:
                if last.get(sid) == op.index:
                    earlier = [i for i in readers[sid] if i < op.index]
                    if earlier:
                        last[sid] = earlier[-1]
                    else:
                        del last[sid]
    diff = [0] * (n + 1)
    for sid, r in last.items():
        p = start[sid]
        if p <= r:
            diff[p] += size[sid]
            diff[r + 1] -= size[sid]
    # a parameter read by several ops (tied embeddings, a shared layer): autograd sums
    # its gradients before accumulating them, so the sum lives from the backward of its
    # last reader to that of its first; one read by a single op: a transient there
    param_users: dict[int, list[int]] = {}
    param_size: dict[int, int] = {}
    for op in ops:
        if op.out_bytes <= 0 and not op.inplace:
            continue  # a view of the weight (a Linear's t()): its reader makes the gradient
        for sid, nbytes in op.param_grad_inputs:
            param_users.setdefault(sid, []).append(op.index)
            param_size[sid] = max(param_size.get(sid, 0), nbytes)
    own = [op.param_grad_bytes for op in ops]
    for i, (_, back) in (scratch or {}).items():
        own[i] += back
    for sid, users in param_users.items():
        if users[-1] > users[0]:
            diff[users[0]] += param_size[sid]
            diff[users[-1] + 1] -= param_size[sid]
            for i in users:
                own[i] -= dict(ops[i].param_grad_inputs)[sid]
    live = [0] * n
    cur = 0
    for i in range(n):
        cur += diff[i]
        live[i] = cur
    born = [0] * n  # gradients op i's backward makes (their interval ends at i)
    for sid, r in last.items():
        if start[sid] <= r:
            born[r] += size[sid]
    return live, own, born


def working_bytes(trace: Trace, stage_of: list[int],
                  saved: list[tuple[int, int, int, int]], n_stages: int,
                  grads: tuple[list[int], list[int], list[int]] | None = None
                  ) -> list[int]:
    """Per stage, the most bytes its backward holds beyond its saved bytes (bytes).

    The backward is replayed op by op in reverse. The gradient of an activation storage
    that requires grad lives from the backward of its last reader (in forward order) to
    that of its producer (for the output of a cat, whose inputs' gradients are views of
    its gradient, until the last view is added to its input's other gradients or used
    up by its producer's backward); an op's backward also makes a
    gradient of each parameter it reads before accumulating it (a parameter several ops
    read: from the backward of its last reader to that of its first, where autograd
    accumulates the sum). A saved tensor is freed once the backward of the first op that
    saved it has run. w_s = max over the ops of stage s of (gradients live then)
    minus (stage s's saved bytes freed by then), at least 0.

    `stage_of[i]`: the stage of op i; `saved`: (storage key, bytes, stage, ops run when
    it was saved) of the saved tensors the stages' g count (boundaries left out);
    `grads`: `gradients_live(trace)` when already computed.
    """
    ops = trace.ops
    n = len(ops)
    live, own, _ = grads if grads is not None else gradients_live(trace)
    # a saved storage is freed after the backward of the first op that saved it (an
    # input saved before the op ran counts from the op before: never freed too early)
    first: dict[int, tuple[int, int, int]] = {}
    for sid, nbytes, st, pos in saved:
        q = max(0, pos - 1)
        if sid not in first or q < first[sid][0]:
            first[sid] = (q, st, nbytes)
    frees: dict[int, list[tuple[int, int]]] = {}
    for q, st, nbytes in first.values():
        frees.setdefault(q, []).append((st, nbytes))
    work = [0] * n_stages
    freed = [0] * n_stages
    for i in range(n - 1, -1, -1):
        s = stage_of[i]
        need = live[i] + own[i] - freed[s]
        if need > work[s]:
            work[s] = need
        for st, nbytes in frees.get(i, ()):
            freed[st] += nbytes
    return work


def recompute_bytes(trace: Trace, calls: list[CallRecord], saved: list[dict[int, int]],
                    grads: tuple[list[int], list[int], list[int]],
                    scratch: dict[int, tuple[int, int]] | None = None) -> list[int]:
    """Per stage, the most bytes a recomputation of its block holds beyond its saved
    bytes (bytes; 0 for pre and post).

    A region's recomputation runs when backward first needs a saved tensor of the block,
    at the backward of the last op that saved one: the gradients live before that op's
    backward makes its own (`grads`: `gradients_live(trace)`) are live through it. At
    each op of the block it holds the block's saved tensors made so far and the
    storages made inside the block that the traced forward still held then
    (`Trace.freed`: Python locals, an op's output its next op reads, the block's
    output), and an op's forward `scratch` while it runs. `saved[s]`: stage s's saved
    storages (key -> bytes)."""
    out = [0] * (len(calls) + 2)
    freed = trace.freed
    scratch = scratch or {}
    made: dict[int, list[int]] = {}
    for sid, i in trace.produced.items():
        made.setdefault(i, []).append(sid)
    first_pos: dict[int, int] = {}  # ops run when a storage was first saved
    last_pos: dict[int, int] = {}  # and when last
    for sid, _, _, pos in trace.saved_order:
        first_pos.setdefault(sid, pos)
        last_pos[sid] = pos
    for k, c in enumerate(calls):
        mine = saved[k + 1]
        if c.end_op <= c.first_op:
            continue
        ends = [0] * (c.end_op - c.first_op + 1)  # bytes no longer live from op j on
        at = [0] * (c.end_op - c.first_op + 1)  # bytes saved or made at op j
        for i in range(c.first_op, c.end_op):
            for sid in made.get(i, ()):
                if sid in mine:
                    continue
                nbytes = trace.storage_bytes.get(sid, 0)
                at[i - c.first_op] += nbytes
                j = freed.get(sid, c.end_op)
                if j < c.end_op:
                    ends[max(j, i + 1) - c.first_op] += nbytes
        for sid, nbytes in mine.items():
            pos = first_pos.get(sid, c.first_op)
            at[min(max(pos, c.first_op), c.end_op - 1) - c.first_op] += nbytes
        cur = peak = 0
        for j in range(c.end_op - c.first_op):
            cur += at[j] - ends[j]
            peak = max(peak, cur + scratch.get(c.first_op + j, (0, 0))[0])
        if not mine:
            continue  # nothing saved: a region never recomputes it
        # the last op that saved one (an op's output is saved as the op returns, after
        # the trace counted it: either of the two positions)
        pos = max((last_pos[sid] for sid in mine
                   if c.first_op <= last_pos.get(sid, -1) <= c.end_op), default=c.end_op)
        live, _, born = grads
        in_flight = max(live[t] - born[t] for t in {min(max(q, c.first_op), c.end_op - 1)
                                                   for q in (pos - 1, pos)})
        out[k + 1] = max(0, peak - sum(mine.values()) + in_flight)
    return out


def _occurrences(trace: Trace, scope: list[CallRecord] | None, targets: list[CallRecord]
                 ) -> list[CallRef]:
    """CallRefs of `targets` within `scope` (None = the whole forward)."""
    if scope is None:
        return [CallRef(t.path, t.occurrence) for t in targets]
    inside = [c for s in scope for c in trace.calls[s.index:s.end_call]]
    refs = []
    for t in targets:
        occ = sum(1 for c in inside if c.path == t.path and c.index < t.index)
        refs.append(CallRef(t.path, occ))
    return refs


def regions_of_tree(trace: Trace, chain: BlockChain, tree: tuple[Node, ...] | list[Node],
                    kept_ops: set[int] | None = None) -> RuntimePlan:
    """The runtime regions of a plan tree over the chain's stages; top-level regions
    keep the outputs of the trace ops `kept_ops` inside their calls."""
    from .options import region_keep_keys

    def build(nodes: tuple[Node, ...] | list[Node], scope: list[CallRecord] | None
              ) -> tuple[RegionSpec, ...]:
        out: list[RegionSpec] = []
        for node in nodes:
            if isinstance(node, Keep):
                kids = chain.nested[node.stage] if chain.nested else ()
                for ref, c in zip(_occurrences(trace, scope, list(kids)), kids):
                    out.append(RegionSpec(calls=(ref,), mutating=(c.mutates_input,),
                                          expected_packs=c.n_packs))
                continue
            if not isinstance(node, Region):
                raise TypeError(f"plan tree: expected Keep or Region, got {type(node).__name__}")
            if node.start < 1 or node.end - 1 > len(chain.calls):
                raise ValueError(f"plan tree: Region({node.start}, {node.end}) covers pre "
                                 "or post, which are never recomputed")
            calls = list(chain.calls[node.start - 1:node.end - 1])
            keep = (region_keep_keys(trace, calls, kept_ops) if kept_ops and scope is None
                    else frozenset())
            out.append(RegionSpec(
                calls=tuple(_occurrences(trace, scope, calls)),
                children=build(node.children, calls),
                keep_ops=keep,
                mutating=tuple(c.mutates_input for c in calls),
                expected_packs=sum(c.n_packs for c in calls)))
        return tuple(out)

    return RuntimePlan(build(tree, None))
