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
def test_store_all_prediction_matches_graph_peak(name):
    """Clean cuts (csrc/core/graph.h): the chain's store-all plan predicts the graph's
    store-all peak within 10%, and the optimal plan fits half of it."""
    import tiny_backprop as tb
    from tiny_backprop.chain import analyze_graph

    w = zoo.build(name, "small")
    ir = tb.capture(w.model, *w.args, **w.kwargs).ir
    graph_peak = analyze_graph(ir).store_all_peak
    predicted = tb.plan(ir, 1.0, planner="store_all").peak_bytes
    assert abs(predicted - graph_peak) <= 0.1 * graph_peak, (predicted, graph_peak)
    half = tb.plan(ir, graph_peak // 2)
    assert half.peak_bytes <= 0.5 * graph_peak, (half.peak_bytes, graph_peak)
