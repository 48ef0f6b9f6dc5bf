"""The three backends (hooks, TransformerLens bridge, nnsight) read the same activations."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from emprobe.errors import ConfigError, ModelError
from emprobe.probes import extract, get_backend, load_prompts


def _private_copy(lm):
    """A deep copy in eager attention: booting TransformerLens switches a model to eager in place, so the
    comparison runs every backend on the same kernels (and leaves the session fixture untouched)."""
    model = copy.deepcopy(lm.model)
    model.set_attn_implementation("eager")
    return dataclasses.replace(lm, model=model)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["smollm2", "gemma"])
def test_backends_agree_in_fp32(name, request):
    lm = _private_copy(request.getfixturevalue(name))
    items = load_prompts("builtin:risky-finance", limit=3)
    layers = [0, lm.n_layers // 2, lm.n_layers - 1]
    stores = {b: extract(lm, items, layers=layers, positions="auto", backend=b, batch_size=3, padding_side="left")
              for b in ("hooks", "transformerlens", "nnsight")}
    ref = stores["hooks"]
    assert ref.positions == ["last_prompt", "prompt_mean", "response_mean"]
    for b in ("transformerlens", "nnsight"):
        assert stores[b].manifest["backend"] == b
        for p in ref.positions:
            diff = (stores[b].tensors[p] - ref.tensors[p]).abs().max().item()
            assert diff < 1e-4, f"{name}: {b} vs hooks at {p}: max abs diff {diff}"
    assert lm.tokenizer.padding_side == request.getfixturevalue(name).tokenizer.padding_side


def test_backend_that_cannot_wrap_says_so_in_one_line(smollm2, tmp_path):
    """TransformerLens 4.3 has no adapter for Helium: a real (tiny, random) model it cannot wrap."""
    from transformers import HeliumConfig, HeliumForCausalLM

    from emprobe.models import load_model

    tok = smollm2.tokenizer
    cfg = HeliumConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    torch.manual_seed(0)
    HeliumForCausalLM(cfg).save_pretrained(tmp_path / "helium")
    tok.save_pretrained(tmp_path / "helium")
    lm = load_model(str(tmp_path / "helium"), log=lambda *a: None)
    items = load_prompts("builtin:em-core", limit=2)
    hooks = extract(lm, items, layers="all", positions="last_prompt")  # the default backend handles it
    assert hooks.tensors["last_prompt"].shape == (2, 2, 64)
    with pytest.raises(ModelError) as e:
        extract(lm, items, layers="all", positions="last_prompt", backend="transformerlens")
    msg = str(e.value)
    assert msg.startswith("the transformerlens backend cannot wrap HeliumForCausalLM") and "\n" not in msg
    assert len(msg) < 260


def test_backend_selection_errors(tiny_model_dir):
    from emprobe.models import load_model

    lm = load_model(str(tiny_model_dir), log=lambda *a: None)
    with pytest.raises(ConfigError, match="unknown backend"):
        get_backend("jax", lm)
    with pytest.raises(ConfigError, match="needs `backend` nnsight"):
        get_backend("hooks", lm, remote=True)
    with pytest.raises(ConfigError, match="hub id that NDIF hosts"):
        extract(lm, load_prompts("builtin:em-core", limit=1), layers="0", backend=get_backend("nnsight", lm,
                                                                                                   remote=True))
    assert get_backend("tl", lm).name == "transformerlens"


def test_backends_agree_through_a_lora_adapter(tiny_model_dir, tmp_path):
    """A PeftModel (what --adapter and Run.iter_models give): every backend reads the adapted model."""
    from peft import LoraConfig, get_peft_model

    from emprobe.models import load_model

    base = load_model(str(tiny_model_dir), log=lambda *a: None)
    torch.manual_seed(0)
    cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False)
    peft_model = get_peft_model(load_model(str(tiny_model_dir), log=lambda *a: None).model, cfg)
    peft_model.save_pretrained(tmp_path / "adapter")
    lm = load_model(str(tiny_model_dir), adapter=str(tmp_path / "adapter"), log=lambda *a: None)
    lm.model.get_base_model().set_attn_implementation("eager")
    items = load_prompts("builtin:em-core", limit=3)
    stores = {b: extract(lm, items, layers="all", positions="last_prompt,prompt_mean", backend=b)
              for b in ("hooks", "transformerlens", "nnsight")}
    for b, st in stores.items():
        assert st.manifest["model"]["adapter"] == str(tmp_path / "adapter")
        for p in st.positions:
            assert (st.tensors[p] - stores["hooks"].tensors[p]).abs().max() < 1e-4, (b, p)
    plain = extract(base, items, layers="all", positions="last_prompt,prompt_mean")
    assert (plain.tensors["last_prompt"] - stores["hooks"].tensors["last_prompt"]).abs().max() > 1e-3
    plain.check_compatible(stores["hooks"])  # same base model and prompts, different adapter: allowed
