"""Tiny random models for fast tests and examples (real architectures, random weights)."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_llama(out: str | Path, tokenizer, n_layers: int = 2, d_model: int = 64, seed: int = 0) -> Path:
    """Build a random ``LlamaForCausalLM`` sized for ``tokenizer`` and save it (safetensors) with the tokenizer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=d_model, intermediate_size=2 * d_model, num_hidden_layers=n_layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(cfg).eval()
    out = Path(out)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    return out
