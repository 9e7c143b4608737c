"""Hugging Face Trainer integration: one line before ``Trainer(...)``.

    from tiny_backprop import hf
    model = hf.enable(model, budget="2GiB")        # or a fraction of the store-all peak
    trainer = transformers.Trainer(model=model, args=args, train_dataset=ds)
    trainer.train()
    model.save_pretrained("out")                   # the wrapped model's own save_pretrained

`enable` returns an `HCModule` (a subclass made for the model's class) that the Trainer
can treat like the model itself:

- its ``forward`` has the wrapped model's signature, so the Trainer keeps the dataset
  columns the model accepts (``remove_unused_columns``), finds the label names and
  whether the model accepts loss kwargs (``num_items_in_batch``);
- the class is named after the model's class (``GPT2LMHeadModelHC``): Trainer's
  ``find_labels`` looks at the class name (e.g. "QuestionAnswering");
- attributes the wrapper does not have are read from the wrapped model: ``config``,
  ``main_input_name``, ``can_generate``, ``save_pretrained``, ``num_parameters``,
  ``floating_point_ops``, ``generate``, ``_keys_to_ignore_on_save``, ...;
- ``activation_checkpointing_enable`` / ``gradient_checkpointing_enable`` (what the
  Trainer calls for ``activation_checkpointing=True``) log a warning and do nothing:
  the plan already recomputes; HF checkpointing inside it would recompute twice;
- in training, ``use_cache=False`` is passed to a forward that takes ``use_cache`` (the
  KV cache would be appended to again when a region is recomputed), unless the caller
  passes it.

Saving: the wrapper is not a ``PreTrainedModel``, so ``Trainer.save_model`` (and
checkpoints with ``save_strategy`` other than "no") save only a safetensors state dict,
which fails for models with tied weights (GPT-2's ``lm_head`` and ``wte``). Call
``model.save_pretrained(dir)`` (forwarded to the wrapped model) to save, or pass
``hf.enable(...).module`` where a ``PreTrainedModel`` is needed.

This module imports nothing from transformers; ``Trainer`` itself needs ``transformers``
and ``accelerate`` (``pip install 'tiny-backprop[hf]'``). No ``TrainerCallback`` is
needed: the Trainer calls the wrapper like the model; read memory figures with
``model.last_step_stats()`` (``track_memory=True``) after a step.
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

from torch import nn

from .hc_module import HCModule

logger = logging.getLogger("tiny_backprop")

Budget = int | float | str


class HFHCModule(HCModule):
    """An HCModule that looks enough like the wrapped Hugging Face model for `Trainer`.

    Made per model class by `enable` (a subclass whose ``forward`` carries the model's
    signature); the constructor takes the same arguments as `HCModule`.
    """

    def __init__(self, model: nn.Module, budget: Budget, **hcmodule_kwargs: Any) -> None:
        super().__init__(model, budget, **hcmodule_kwargs)
        object.__setattr__(self, "_hf_model", model)
        try:
            params = inspect.signature(model.forward).parameters
        except (TypeError, ValueError):
            params = {}
        object.__setattr__(self, "_hf_takes_use_cache", "use_cache" in params)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Like the wrapped model's forward; in training, under the plan."""
        if self.training and self._hf_takes_use_cache and "use_cache" not in kwargs:
            kwargs["use_cache"] = False
        return super().forward(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("_hf_model")
            if model is None or (name.startswith("__") and name.endswith("__")):
                raise
            return getattr(model, name)

    def activation_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing (with a warning): the tiny-backprop plan already recomputes."""
        logger.warning("tiny_backprop: activation checkpointing is not enabled on the wrapped "
                       "model; the tiny-backprop plan already decides what to recompute "
                       "(set activation_checkpointing=False to silence this)")

    def gradient_checkpointing_enable(self, *args: Any, **kwargs: Any) -> None:
        """Do nothing (with a warning): the tiny-backprop plan already recomputes."""
        self.activation_checkpointing_enable(*args, **kwargs)


def _wrapper_class(model: nn.Module) -> type[HFHCModule]:
    cls = type(model)
    base_forward = HFHCModule.forward

    def forward(self: HFHCModule, *args: Any, **kwargs: Any) -> Any:
        return base_forward(self, *args, **kwargs)

    try:
        forward.__signature__ = inspect.signature(cls.forward)  # type: ignore[attr-defined]
    except (TypeError, ValueError, AttributeError):
        pass
    forward.__doc__ = base_forward.__doc__
    name = f"{cls.__name__}HC"
    forward.__qualname__ = f"{name}.forward"
    return type(name, (HFHCModule,), {"forward": forward, "__module__": __name__,
                                      "__qualname__": name})


def enable(model: nn.Module, budget: Budget, **hcmodule_kwargs: Any) -> HFHCModule:
    """Wrap a Hugging Face model for training under `budget` with ``transformers.Trainer``.

    Args:
        model: a ``PreTrainedModel`` (any nn.Module works; the Trainer-specific parts
            only matter for Hugging Face models). It is not copied: the wrapper shares
            its parameters, so ``state_dict()`` keys are the model's.
        budget: the activation budget: int bytes, a size string ("2GiB") or a float in
            (0, 1], a fraction of the store-all peak (see `HCModule`).
        **hcmodule_kwargs: passed on to `HCModule` (``planner=``, ``track_memory=``).

    Returns:
        The wrapper (an `HCModule`); pass it as ``Trainer(model=...)``. ``.module`` is the
        original model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, not {type(model).__name__}")
    if isinstance(model, HCModule):
        raise TypeError("model is already wrapped by tiny_backprop (an HCModule)")
    return _wrapper_class(model)(model, budget, **hcmodule_kwargs)

