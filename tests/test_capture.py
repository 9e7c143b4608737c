"""capture() on our own small models: graph/IR alignment, bitwise replay, model state."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from tests._capture_checks import assert_unchanged, eager_vs_captured, meta_bytes, snapshot
from tests._capture_models import DataDependent, KwargsDict, cases
from tiny_backprop import Captured, CaptureError, capture, zoo
from tiny_backprop.ir import (
    FLAG_ALIAS,
    FLAG_INPLACE,
    FLAG_INPUT,
    FLAG_OUTPUT,
    FLAG_OUTPUT_SAVED,
    FLAG_PARAM,
    FLAG_RANDOM,
)

CASES = cases()
EXPECTED_METHOD = {"varargs": "export", "gpt": "export"}  # gpt: torch.ones(t, t) on a traced size


@pytest.fixture(scope="module")
def captured() -> dict:
    out = {}
    for name, (factory, args, kwargs) in CASES.items():
        torch.manual_seed(0)
        model = factory().train()
        twin = copy.deepcopy(model)
        out[name] = (model, twin, capture(model, *args, **kwargs), args, kwargs)
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_graph_and_ir_align(captured, name):
    model, _, cap, _, _ = captured[name]
    assert isinstance(cap, Captured)
    assert cap.method == EXPECTED_METHOD.get(name, "symbolic_trace")
    nodes = list(cap.gm.graph.nodes)
    assert [n.name for n in nodes] == [i.name for i in cap.ir.nodes]
    assert [n.op for n in nodes] == [i.op for i in cap.ir.nodes]
    assert cap.ir.method == cap.method and nodes[-1].op == "output"
    for i, info in enumerate(cap.ir.nodes):
        assert all(0 <= j < i for j in info.inputs)
    kinds = {i.name: i.flags for i in cap.ir.nodes if i.op == "placeholder"}
    assert [n for n in cap.input_names] == [n for n, f in kinds.items() if f & FLAG_INPUT]
    assert all(f & (FLAG_INPUT | FLAG_PARAM) for f in kinds.values())
    params = dict(model.named_parameters()) | dict(model.named_buffers())
    for node_name, qual in cap.param_bindings.items():
        assert qual in params, (node_name, qual)
    assert any(i.has(FLAG_OUTPUT) for i in cap.ir.nodes)
    compute = [i for i in cap.ir.nodes if i.op.startswith("call")]
    assert sum(i.cost for i in compute) > 0
    assert all(i.output_bytes == 0 for i in cap.ir.nodes if i.op == "output")


@pytest.mark.parametrize("name", list(CASES))
def test_captured_graph_reproduces_eager_bitwise(captured, name):
    model, twin, cap, args, kwargs = captured[name]
    eager_vs_captured(twin, model, cap, args, kwargs)


@pytest.mark.parametrize("name", ["mlp", "cnn", "unet", "inplace", "kwargs"])
def test_output_bytes_match_leaf_module_hooks(name):
    factory, args, kwargs = CASES[name]
    torch.manual_seed(0)
    model = factory().train()
    cap = capture(model, *args, **kwargs)
    seen: dict[str, int] = {}

    def hook(mod, inp, out, path):
        seen[path] = sum(t.numel() * t.element_size() for t in [out] if torch.is_tensor(t))

    leaves = [(p, m) for p, m in model.named_modules() if not list(m.children()) and p]
    handles = [m.register_forward_hook(lambda m, i, o, p=p: hook(m, i, o, p)) for p, m in leaves]
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
    module_nodes = {i.target: i for i in cap.ir.nodes if i.op == "call_module"}
    assert module_nodes, "symbolic_trace should keep leaf-module calls as nodes"
    for path, info in module_nodes.items():
        assert info.output_bytes == seen[path], path
        assert info.module_path == path


def test_flags_random_inplace_alias_saved(captured):
    gpt = captured["gpt"][2].ir.nodes
    drops = [i for i in gpt if "drop" in i.target]
    assert drops and all(i.has(FLAG_RANDOM) for i in drops)
    assert all(i.extra_saved_bytes > 0 for i in drops)  # the dropout masks
    assert not any(i.has(FLAG_RANDOM) for i in gpt if "drop" not in i.target)
    lns = [i for i in gpt if "layer_norm" in i.target]
    assert {i.module_path for i in lns} >= {"ln", "blocks.0.ln1", "blocks.1.ln2"}
    assert lns and all(i.extra_saved_bytes > 0 for i in lns)  # mean / rstd
    views = [i for i in gpt if ".view." in i.target or ".transpose." in i.target]
    assert views and all(i.has(FLAG_ALIAS) and i.cost == 0 for i in views)
    mms = [i for i in gpt if "linear" in i.target or "matmul" in i.target]
    assert mms and all(i.cost >= 2 * i.output_bytes // 4 for i in mms)  # real FLOPs
    assert any(i.has(FLAG_OUTPUT_SAVED) for i in gpt if "layer_norm" in i.target)
    inplace = {i.target: i for i in captured["inplace"][2].ir.nodes}
    assert inplace["act"].has(FLAG_INPLACE) and inplace["act"].has(FLAG_ALIAS)
    assert inplace["add_"].has(FLAG_INPLACE)
    assert not inplace["fc1"].has(FLAG_INPLACE)
    cnn = captured["cnn"][2].ir.nodes
    assert not any(i.has(FLAG_RANDOM) for i in cnn)


def test_eval_mode_dropout_is_not_random():
    factory, args, kwargs = CASES["gpt"]
    model = factory().eval()
    cap = capture(model, *args, **kwargs)
    assert not any(i.has(FLAG_RANDOM) for i in cap.ir.nodes)


@pytest.mark.parametrize("name", ["cnn", "gpt", "varargs"])
def test_capture_leaves_model_unchanged(name):
    factory, args, kwargs = CASES[name]
    torch.manual_seed(0)
    model = factory().train()
    for m in list(model.modules())[1::3]:
        m.eval()  # mixed flags must survive
    loss = sum(t.float().sum() for t in [model(*args, **kwargs)] if torch.is_tensor(t)) \
        if name != "varargs" else model(*args, **kwargs)["out"].sum()
    loss.backward()
    torch.manual_seed(7)
    before = snapshot(model)
    capture(model, *args, **kwargs)
    assert_unchanged(model, before)


def test_kwargs_dict_model_rebuilds_output(captured):
    model, _, cap, args, kwargs = captured["varargs"]
    out = cap.run(model, *args, **kwargs)
    assert isinstance(out, dict) and set(out) == {"hidden", "out"}
    assert cap.user_output_count == 2 and cap.buffer_updates == {}
    flat = cap.flat_args(model, *args, **kwargs)
    assert len(flat) == len(cap.placeholder_names())
    assert flat[0] is model.enc.weight  # the user's own tensor is bound
    with pytest.raises(ValueError, match="keyword arguments"):
        cap.flat_args(model, *args)


def test_symbolic_trace_specialises_non_tensor_kwargs(captured):
    model, _, cap, args, kwargs = captured["kwargs"]
    assert cap.gm.enc is model.enc  # shared, so grads land on the user's parameters
    with pytest.raises(AssertionError, match="specialized"):
        cap.run(model, *args, mask=kwargs["mask"], scale=3.0)


def test_uncapturable_model_raises_capture_error():
    model = DataDependent()
    with pytest.raises(CaptureError) as info:
        capture(model, torch.randn(2, 4))
    msg = str(info.value)
    assert "DataDependent" in msg
    assert "y.abs().max() > 1.0" in msg  # the line that failed
    assert "symbolic_trace:" in msg and "export:" in msg
    assert "leaf" in msg and "simpler example inputs" in msg and 'fallback="per_block"' in msg


def test_bad_arguments_name_the_argument():
    with pytest.raises(TypeError, match="'model' must be a torch.nn.Module"):
        capture(lambda x: x, torch.randn(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no example inputs"):
        capture(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="do not match KwargsDict.forward"):
        capture(KwargsDict(), torch.randn(3, 8), nope=1)


@pytest.mark.parametrize("name", ["gpt", "varargs"])
def test_export_output_bytes_match_node_shapes(captured, name):
    """Measured bytes == bytes of export's own shape metadata (node.meta['val'])."""
    _, _, cap, _, _ = captured[name]
    checked = 0
    for node, info in zip(cap.gm.graph.nodes, cap.ir.nodes):
        expected = meta_bytes(node.meta.get("val"))
        if node.op in ("call_function", "placeholder") and expected is not None:
            assert info.output_bytes == expected, node.name
            checked += 1
    assert checked > 10


def test_export_binds_plain_tensor_attributes_as_constants():
    class WithConstant(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.scale = nn.Linear(4, 4), torch.full((4,), 2.0)

        def forward(self, *args):
            return self.fc(args[0]) * self.scale

    model, x = WithConstant(), torch.randn(2, 4)
    cap = capture(model, x)
    assert cap.method == "export" and "scale" in cap.param_bindings.values()
    assert torch.equal(cap.run(model, x), model(x))


def test_calibrated_cost_model_weights_elementwise_ops() -> None:
    import importlib

    capi = importlib.import_module("tiny_backprop.capture.api")
    w = zoo.build("gpt2", "small", overrides=dict(batch=1, seq=8))
    old = capi.COST_MODEL
    try:
        costs = {}
        for cm in ("flops", "calibrated"):
            capi.COST_MODEL = cm
            ir = capture(w.model, *w.args).ir
            costs[cm] = {n.name: n.cost for n in ir.nodes}
    finally:
        capi.COST_MODEL = old
    flops, cal = costs["flops"], costs["calibrated"]
    assert flops.keys() == cal.keys()
    assert all(cal[k] >= flops[k] for k in flops)  # never cheaper than FLOPs
    raised = [k for k in flops if cal[k] > flops[k]]
    assert raised and any("gelu" in k or "dropout" in k for k in raised)
    assert all(cal[k] == 0 for k in flops if flops[k] == 0)  # views stay free
