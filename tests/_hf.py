"""Small random-init Hugging Face models (no downloads) and their training inputs."""

from __future__ import annotations

from typing import Any

import pytest
import torch

HF_MODELS = ("gpt2", "llama", "bert", "t5", "bart", "vit", "resnet", "convnext",
             "mixtral", "mixtral_eager")


def build(kind: str) -> tuple[torch.nn.Module, Any]:
    """(model, make_inputs(step) -> (args, kwargs)) for an HF model family."""
    tf = pytest.importorskip("transformers")
    torch.manual_seed(0)
    v, d = 64, 32
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, v, (2, 12), generator=g)

    def text(step: int) -> tuple[tuple, dict]:
        return (), {"input_ids": ids, "labels": ids}

    if kind == "gpt2":
        m = tf.GPT2LMHeadModel(tf.GPT2Config(n_layer=2, n_embd=d, n_head=2, vocab_size=v,
                                             n_positions=32))
    elif kind == "llama":
        m = tf.LlamaForCausalLM(tf.LlamaConfig(
            hidden_size=d, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=v, max_position_embeddings=32))
    elif kind in ("mixtral", "mixtral_eager"):
        extra = {"experts_implementation": "eager"} if kind == "mixtral_eager" else {}
        m = tf.MixtralForCausalLM(tf.MixtralConfig(
            hidden_size=d, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            num_key_value_heads=1, vocab_size=v, max_position_embeddings=32,
            num_local_experts=4, num_experts_per_tok=2, output_router_logits=True, **extra))
    elif kind == "bert":
        m = tf.BertForMaskedLM(tf.BertConfig(
            hidden_size=d, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            vocab_size=v, max_position_embeddings=32))
    elif kind in ("t5", "bart"):
        if kind == "t5":
            m = tf.T5ForConditionalGeneration(tf.T5Config(
                d_model=d, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=2, d_kv=16,
                vocab_size=v, decoder_start_token_id=0))
        else:
            m = tf.BartForConditionalGeneration(tf.BartConfig(
                d_model=d, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                vocab_size=v, max_position_embeddings=32))
    else:
        pix = torch.randn(2, 3, 32, 32, generator=g)
        lab = torch.randint(0, 3, (2,), generator=g)

        def image(step: int) -> tuple[tuple, dict]:
            return (), {"pixel_values": pix, "labels": lab}

        if kind == "vit":
            m = tf.ViTForImageClassification(tf.ViTConfig(
                hidden_size=d, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                image_size=32, patch_size=8, num_labels=3))
        elif kind == "resnet":
            m = tf.ResNetForImageClassification(tf.ResNetConfig(
                embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2], num_labels=3))
        elif kind == "convnext":
            m = tf.ConvNextForImageClassification(tf.ConvNextConfig(
                hidden_sizes=[8, 16], depths=[1, 2], num_stages=2, num_labels=3, image_size=32))
        else:
            raise ValueError(kind)
        return m.train(), image
    return m.train(), text
