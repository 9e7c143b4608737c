import pytest
import torch

from tiny_backprop import zoo


@pytest.mark.parametrize("name", zoo.MODELS)
def test_small_models_train_and_keep_rng(name):
    state = torch.random.get_rng_state()
    w = zoo.build(name, "small", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert isinstance(w.model.blocks, torch.nn.ModuleList) and len(w.model.blocks) >= 2
    loss = w.model(*w.args, **w.kwargs)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in w.model.parameters())


def test_same_seed_same_model_and_data():
    a, b = zoo.build("gpt2", "small", seed=1), zoo.build("gpt2", "small", seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.model.state_dict().values(), b.model.state_dict().values()))
    assert all(torch.equal(x, y) for x, y in zip(a.args, b.args))


def test_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match="name must be one of"):
        zoo.build("vgg")
    with pytest.raises(ValueError, match="profile must be one of"):
        zoo.build("gpt2", "huge")
    with pytest.raises(ValueError, match="unknown field 'nope'"):
        zoo.build("gpt2", overrides={"nope": 1})


def test_overrides_change_the_size():
    w = zoo.build("gpt2", "small", overrides={"seq": 32})
    assert w.args[0].shape[1] == 32


@pytest.mark.parametrize("name", zoo.MODELS)
def test_chain_store_all_matches_the_trace(name):
    """The per-block chain's store-all plan predicts what the trace saves (the model's
    inputs plus every saved activation) within 10%, and the optimal plan at half of it
    fits."""
    from tiny_backprop.planning import plan_trace
    from tiny_backprop.trace import trace_model

    w = zoo.build(name, "small")
    trace = trace_model(w.model.train(), w.args, w.kwargs)
    saved = trace.input_bytes + trace.saved_bytes
    full = plan_trace(w.model, trace, 1.0, planner="store_all")
    held = full.predicted_held_bytes  # the backward's gradients in flight left out
    assert abs(held - saved) <= 0.1 * saved, (held, saved)
    assert full.predicted_peak_bytes >= held
