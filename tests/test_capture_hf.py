"""capture() on small random-init Hugging Face models (built from configs, no downloads)."""

from __future__ import annotations

import copy

import pytest
import torch
from _capture_checks import assert_unchanged, eager_vs_captured, meta_bytes, snapshot

from tiny_backprop import capture
from tiny_backprop.ir import FLAG_OUTPUT, FLAG_PARAM, FLAG_RANDOM

transformers = pytest.importorskip("transformers")


def gpt2():
    cfg = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=2, vocab_size=128,
                                  n_positions=64, attn_implementation="eager")
    return transformers.GPT2LMHeadModel(cfg)


def llama():
    cfg = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2,
                                   vocab_size=128, attn_implementation="eager")
    return transformers.LlamaForCausalLM(cfg)


MODELS = {"gpt2": gpt2, "llama": llama}


@pytest.fixture(scope="module", params=list(MODELS))
def hf(request):
    torch.manual_seed(0)
    model = MODELS[request.param]().train()
    twin = copy.deepcopy(model)
    ids = torch.randint(0, 128, (2, 16), generator=torch.Generator().manual_seed(1))
    kwargs = {"labels": ids, "use_cache": False}
    before = snapshot(model)
    cap = capture(model, ids, **kwargs)
    assert_unchanged(model, before)
    return request.param, model, twin, cap, (ids,), kwargs


def test_hf_captured_by_export_with_model_output(hf):
    name, model, _, cap, args, kwargs = hf
    assert cap.method == "export"
    assert any("symbolic_trace" in d for d in cap.diagnostics)
    nodes = list(cap.gm.graph.nodes)
    assert [n.name for n in nodes] == [i.name for i in cap.ir.nodes]
    n_params = sum(1 for _ in model.parameters())
    assert sum(1 for i in cap.ir.nodes if i.has(FLAG_PARAM)) >= n_params
    assert cap.input_names and cap.user_output_count >= 2
    out = cap.run(model, *args, **kwargs)
    assert type(out).__name__.startswith("CausalLMOutput")
    assert out.loss.ndim == 0 and out.logits.shape == (2, 16, 128)
    assert sum(i.has(FLAG_OUTPUT) for i in cap.ir.nodes) >= 2


def test_hf_reproduces_eager_bitwise(hf):
    _, model, twin, cap, args, kwargs = hf
    eager_vs_captured(twin, model, cap, args, kwargs)


def test_hf_bytes_flags_costs(hf):
    name, _, _, cap, _, _ = hf
    for node, info in zip(cap.gm.graph.nodes, cap.ir.nodes):
        expected = meta_bytes(node.meta.get("val"))
        if node.op == "call_function" and expected is not None:
            assert info.output_bytes == expected, node.name
    random = [i for i in cap.ir.nodes if i.has(FLAG_RANDOM)]
    if name == "gpt2":  # resid/embd/attn dropout 0.1 in train mode
        assert random and all("dropout" in i.target for i in random)
    assert sum(i.cost for i in cap.ir.nodes) > 2 * 2 * 16 * 64 * 64 * 4  # real matmul FLOPs
    assert any(i.module_path.startswith(("transformer.h.1", "model.layers.1"))
               for i in cap.ir.nodes)
    assert sum(i.extra_saved_bytes for i in cap.ir.nodes) > 0
