"""Hugging Face models as users call them: exact over 3 AdamW steps at 1.0, 0.5 and the
minimum; use_cache, generate and the inner model's eval()."""

from __future__ import annotations

import logging

import pytest
import torch

from tests._exact import assert_exact
from tests._hf import HF_MODELS, build
from tiny_backprop import HCModule


@pytest.mark.parametrize("kind", HF_MODELS)
@pytest.mark.parametrize("budget", [1.0, 0.5, "min"])
def test_hf_models_exact(kind, budget) -> None:
    model, inputs = build(kind)
    try:
        assert_exact(model, inputs, budget)
    except Exception as e:  # a budget under the per-block minimum: use the minimum
        from tiny_backprop import BudgetError
        if not isinstance(e, BudgetError):
            raise
        assert_exact(build(kind)[0], inputs, e.minimum_bytes)


def test_default_call_with_cache_on_is_exact_and_logged_once(caplog) -> None:
    model, inputs = build("gpt2")
    assert model.config.use_cache
    import copy

    from tests._exact import min_budget
    args, kwargs = inputs(0)
    budget = min_budget(copy.deepcopy(model), args, kwargs)
    with caplog.at_level(logging.INFO, logger="tiny_backprop"):
        hc = assert_exact(model, inputs, budget)
    logs = [r for r in caplog.records if "use_cache" in r.getMessage()]
    assert len(logs) == 1
    assert hc.plan.regions


def test_generate_and_attributes_reach_the_model() -> None:
    model, inputs = build("gpt2")
    hc = HCModule(model, 0.5)
    assert hc.config is model.config
    hc.eval()
    out = hc.generate(torch.tensor([[1, 2, 3]]), max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 6)


def test_inner_model_eval_is_honoured() -> None:
    model, inputs = build("bert")
    hc = HCModule(model, 0.5)
    model.eval()  # dropout off, through the wrapper that still says train()
    args, kwargs = inputs(0)
    a = hc(*args, **kwargs).loss
    b = hc(*args, **kwargs).loss
    assert torch.equal(a, b)
    assert hc.plan is None  # eval: the plain model ran
