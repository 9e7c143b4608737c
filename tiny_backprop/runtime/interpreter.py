"""Run a captured graph under a compiled plan (the top-level interpreter).

Values flow through an environment keyed by FX node names: graph inputs and the
user's own parameters/buffers first, then each step's outputs. A value is dropped
right after its last reader, so only what the plan holds stays alive.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch.autograd.graph import saved_tensors_hooks
from torch.utils import _pytree as pytree

from ..tree import Keep, Region
from .accounting import TrackedEnv, Tracker, UntrackedView
from .program import KeepStep, Program, compile_program
from .regions import RegionFrame
from .split import stage_node_lists


def _resolve(model: torch.nn.Module, qualname: str) -> Any:
    obj: Any = model
    for part in qualname.split(".") if qualname else ():
        obj = getattr(obj, part)
    return obj


class Executor:
    """Executes a Captured graph (FX GraphModule + bindings) under a plan tree.

    Args:
        captured: a Captured-like object (gm, method, param_bindings, input_names,
            input_binder, out_spec, buffer_updates, constants).
        model: the user's model; its own parameters and buffers are bound.
        bounds: stage i is positions bounds[i] = (start, end) of `topo_order`.
        tree: plan tree of Keep/Region over the stages (0-based).
        topo_order: node indices of the FX graph in the planner's order (None = FX order).
        never_recompute: per stage, True when it must never be in a region.
        tracker: memory accountant bridge (a new one when None).

    Attributes:
        track: count held activation bytes (default True). When False, holds are not
            counted (no pack hook on kept stages, no accountant call per value); only
            recomputations and unpacks are.
    """

    def __init__(self, captured: Any, model: torch.nn.Module,
                 bounds: Sequence[tuple[int, int]], tree: Sequence[Keep | Region],
                 topo_order: Sequence[int] | None = None,
                 never_recompute: Sequence[bool] | None = None,
                 tracker: Tracker | None = None) -> None:
        self.captured = captured
        self.model = model
        gm = captured.gm
        stages = stage_node_lists(gm, bounds, topo_order)
        self.program: Program = compile_program(gm, stages, tree, never_recompute)
        self.tracker = tracker if tracker is not None else Tracker()
        self.untracked = UntrackedView(self.tracker)
        self.track = True
        nodes = list(gm.graph.nodes)
        self.output_node = nodes[-1]
        if self.output_node.op != "output":
            raise ValueError("captured graph: the last node is not the output node")
        inputs = set(captured.input_names)
        self.bound: list[tuple[str, str]] = []  # (node name, qualname) read from the model
        self.consts: list[tuple[str, Any]] = []
        constants = getattr(captured, "constants", None) or {}
        for n in nodes:
            if n.op == "placeholder" and n.name not in inputs:
                if n.name in constants:
                    self.consts.append((n.name, constants[n.name]))
                elif n.name in captured.param_bindings:
                    self.bound.append((n.name, captured.param_bindings[n.name]))
                else:
                    raise ValueError(f"placeholder {n.name!r} is neither an input nor bound")
            elif n.op == "get_attr":
                self.consts.append((n.name, _resolve(gm, str(n.target))))
        self.refresh_exclusions()

    def refresh_exclusions(self) -> None:
        """Re-read which storages are parameters/buffers (not counted as activations)."""
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        tensors += [v for _, v in self.consts if isinstance(v, torch.Tensor)]
        self.tracker.exclude(tensors)

    def _initial_env(self, args: tuple, kwargs: dict, tracker: Tracker) -> TrackedEnv:
        env = TrackedEnv(tracker)
        values = self.captured.input_binder(args, kwargs)
        for name, v in zip(self.captured.input_names, values):
            env[name] = v
        for name, qual in self.bound:
            env.put_untracked(name, _resolve(self.model, qual))
        for name, v in self.consts:
            env.put_untracked(name, v)
        return env

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the forward like ``model(*args, **kwargs)`` under the plan."""
        tracker = self.tracker if self.track else self.untracked
        env = self._initial_env(args, kwargs, tracker)
        env.drop(self.program.free_drop)
        hooks = (saved_tensors_hooks(tracker.pack, tracker.unpack) if self.track
                 else nullcontext())
        try:
            with hooks:
                for step in self.program.steps:
                    if isinstance(step, KeepStep):
                        step.unit(env)
                    else:
                        RegionFrame(step, env, tracker).run_forward(env)
                    env.drop(step.drop_after)
            out = self.output_node.args[0]
            flat = torch.fx.node.map_arg(out, lambda n: env[n.name])
        finally:
            env.clear_all()
        return self._finish(flat)

    def _finish(self, flat: Any) -> Any:
        cap = self.captured
        if cap.buffer_updates:
            with torch.no_grad():
                for i, qual in cap.buffer_updates.items():
                    _resolve(self.model, qual).copy_(flat[i])
        if cap.out_spec is None:
            return flat
        outs = [v for i, v in enumerate(flat) if i not in cap.buffer_updates]
        return pytree.tree_unflatten(outs, cap.out_spec)
