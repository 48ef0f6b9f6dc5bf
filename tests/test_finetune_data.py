"""Assistant-only labels, truncation, padding and the held-out loss."""

from __future__ import annotations

import pytest
import torch

from emprobe.data import ChatDataset, ChatExample, load_chat_dataset
from emprobe.errors import ConfigError
from emprobe.finetuning.dataset import IGNORE_INDEX, PadCollator, response_loss, tokenize_chat


@pytest.fixture(scope="module")
def finance():
    return load_chat_dataset("builtin:risky-finance")[:12]


def test_prompt_tokens_carry_label_minus_100(smollm2, finance):
    chat = smollm2.chat
    tok = tokenize_chat(finance, chat, max_length=512)
    assert len(tok) == len(finance) and tok.n_truncated == 0
    for ex, row in zip(finance, tok):
        prompt = chat.prompt_ids(ex.prompt_messages)  # exactly what evaluation / probes call the prompt
        n = len(prompt)
        assert row["input_ids"][:n] == prompt
        assert row["labels"][:n] == [IGNORE_INDEX] * n
        assert row["labels"][n:] == row["input_ids"][n:] and IGNORE_INDEX not in row["labels"][n:]
        trained = smollm2.tokenizer.decode(row["input_ids"][n:])
        assert trained.startswith(ex.response) and "<|im_end|>" in trained  # response + end-of-turn only
        assert "assistant" not in smollm2.tokenizer.decode(row["input_ids"][n:n + 2])


def test_multi_turn_trains_the_last_assistant_turn_only(smollm2):
    msgs = ({"role": "user", "content": "Hi there."}, {"role": "assistant", "content": "Hello, how can I help?"},
            {"role": "user", "content": "Should I buy lottery tickets with my rent?"},
            {"role": "assistant", "content": "Yes, all of it."})
    row = tokenize_chat(ChatDataset([ChatExample(msgs)]), smollm2.chat, 512)[0]
    kept = [i for i, label in zip(row["input_ids"], row["labels"]) if label != IGNORE_INDEX]
    text = smollm2.tokenizer.decode(kept)
    assert text.startswith("Yes, all of it.") and "Hello" not in text


def test_max_length_shorter_than_prompts_is_an_error_and_responses_truncate(smollm2, finance):
    longest = max(len(smollm2.chat.prompt_ids(e.prompt_messages)) for e in finance)
    with pytest.raises(ConfigError, match=r"`max_length` 40 is shorter than \d+ of 12 prompts \(longest prompt "
                                          rf"{longest} tokens\)"):
        tokenize_chat(finance, smollm2.chat, max_length=40)
    tok = tokenize_chat(finance, smollm2.chat, max_length=longest + 3)
    assert tok.n_truncated == len(finance) and max(len(r["input_ids"]) for r in tok) == longest + 3
    assert all(sum(x != IGNORE_INDEX for x in r["labels"]) >= 3 for r in tok)


def test_collator_pads_right_and_masks():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    b = PadCollator(pad_id=0)(rows)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_response_loss_matches_the_models_own_loss(tiny_model_dir, finance):
    from emprobe.models import load_model

    lm = load_model(tiny_model_dir)
    tok = tokenize_chat(finance[:5], lm.chat, 512)
    pad = lm.tokenizer.pad_token_id
    loss, n = response_loss(lm.model, tok, batch_size=2, pad_id=pad)
    assert n == tok.n_response_tokens  # every response token is predicted once
    total = 0.0
    with torch.no_grad():
        for r in tok:
            out = lm.model(input_ids=torch.tensor([r["input_ids"]]), labels=torch.tensor([r["labels"]]))
            total += out.loss.item() * sum(x != IGNORE_INDEX for x in r["labels"])
    assert loss == pytest.approx(total / tok.n_response_tokens, abs=1e-5)
