"""tiny_backprop.hf.enable with transformers.Trainer: same losses as the plain model."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")  # Trainer needs it

from tiny_backprop import HCModule, hf  # noqa: E402

CONFIG = dict(n_layer=2, n_embd=64, n_head=2, vocab_size=100, n_positions=64)  # dropout 0.1


def _gpt2() -> nn.Module:
    transformers.set_seed(0)
    return transformers.GPT2LMHeadModel(transformers.GPT2Config(**CONFIG))


def _dataset(n: int = 12, length: int = 16) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(n):
        ids = torch.randint(0, CONFIG["vocab_size"], (length,), generator=g)
        rows.append({"input_ids": ids, "labels": ids.clone(), "unused": torch.zeros(1)})
    return rows


def _train(model: nn.Module, tmp_path, steps: int = 3) -> tuple[list[float], list[float], Any]:
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=4,
        logging_steps=1, learning_rate=1e-3, use_cpu=True, report_to=[], save_strategy="no",
        dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=_dataset())
    trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    return [h["loss"] for h in logs], [h["grad_norm"] for h in logs], trainer


def test_trainer_losses_equal_the_plain_model(tmp_path):
    plain = _gpt2()
    want_loss, want_norm, plain_trainer = _train(plain, tmp_path / "plain")

    inner = _gpt2()
    model = hf.enable(inner, budget=0.7)
    got_loss, got_norm, trainer = _train(model, tmp_path / "tiny")

    assert len(want_loss) == 3
    assert "Region(" in str(model.plan)  # the plan recomputes something
    assert model.last_step_stats().n_recomputes > 0
    assert got_loss == want_loss  # exact: same seed, dropout on
    assert got_norm == want_norm
    for (name, p), q in zip(plain.named_parameters(), inner.parameters()):
        assert torch.equal(p, q), name
    assert trainer.label_names == ["labels"]
    # floating_point_ops and num_parameters reach the model: the FLOP count is the same
    assert trainer.state.total_flos == plain_trainer.state.total_flos > 0


def test_wrapper_looks_like_the_model_to_the_trainer(tmp_path, caplog):
    inner = _gpt2()
    model = hf.enable(inner, budget=0.7)
    assert isinstance(model, HCModule) and model.module is inner
    assert type(model).__name__ == "GPT2LMHeadModelHC"
    assert list(inspect.signature(model.forward).parameters) == \
        list(inspect.signature(inner.forward).parameters)
    assert transformers.utils.find_labels(type(model)) == ["labels"]
    assert model.config is inner.config
    assert model.main_input_name == "input_ids"
    assert model.can_generate() == inner.can_generate()
    assert model.num_parameters() == inner.num_parameters()
    assert list(model.state_dict()) == list(inner.state_dict())
    with pytest.raises(AttributeError):
        model.no_such_attribute  # noqa: B018

    with caplog.at_level(logging.WARNING, logger="tiny_backprop"):
        model.gradient_checkpointing_enable()
    assert "already decides what to recompute" in caplog.text
    name = ("is_activation_checkpointing" if hasattr(type(inner), "is_activation_checkpointing")
            else "is_gradient_checkpointing")
    assert getattr(inner, name) is False

    model.save_pretrained(tmp_path / "saved")
    again = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "saved")
    for (name, p), q in zip(inner.state_dict().items(), again.state_dict().values()):
        assert torch.equal(p, q), name


class _Recorder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.seen: list[Any] = []

    def forward(self, x: torch.Tensor, use_cache: bool | None = None) -> torch.Tensor:
        self.seen.append(use_cache)
        return self.lin(x).sum()


def test_training_forward_turns_the_kv_cache_off():
    rec = _Recorder()
    model = hf.enable(rec, budget=1.0)
    model(torch.randn(2, 4)).backward()
    assert rec.seen and set(rec.seen) == {False}
    rec.seen.clear()
    model(torch.randn(2, 4), use_cache=True).backward()  # the caller's choice stands
    assert set(rec.seen) == {True}
    rec.seen.clear()
    model.eval()
    model(torch.randn(2, 4))
    assert rec.seen == [None]


def test_enable_rejects_bad_models():
    with pytest.raises(TypeError, match="nn.Module"):
        hf.enable(object(), budget=0.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="already wrapped"):
        hf.enable(HCModule(nn.Linear(2, 2), 0.5), budget=0.5)
