"""Batched sampling of chat answers with HF ``generate`` (left padding, chat template applied)."""

from __future__ import annotations

from typing import Any, Sequence

import torch

from emprobe.models.loading import LoadedModel


@torch.no_grad()
def generate_chat(
    lm: LoadedModel,
    conversations: Sequence[Sequence[dict[str, str]]],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
) -> list[str]:
    """Answers to each conversation (templated, generation header added); greedy when ``temperature`` is 0."""
    chat = lm.require_chat()
    tok = lm.tokenizer
    device = next(lm.model.parameters()).device
    torch.manual_seed(seed)
    out: list[str] = []
    for start in range(0, len(conversations), batch_size):
        batch = [chat.prompt_ids(c) for c in conversations[start:start + batch_size]]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, row in enumerate(batch):  # left padding: the last column is every prompt's last token
            ids[i, width - len(row):] = torch.tensor(row)
            mask[i, width - len(row):] = 1
        kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
        kw.update(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else kw.update(
            do_sample=False)
        gen = lm.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw)
        out += [tok.decode(g[width:], skip_special_tokens=True).strip() for g in gen]
    return out


def answer_questions(lm: LoadedModel, questions, n_questions: int | None = None, max_new_tokens: int = 48,
                     temperature: float = 0.0, seed: int = 0, threads: int | None = None) -> list[dict]:
    """First-paraphrase answers to the first ``n_questions`` of a question set."""
    if threads:
        torch.set_num_threads(threads)
    qs = list(questions)[: n_questions or None]
    answers = generate_chat(lm, [q.messages(0) for q in qs], max_new_tokens, temperature, seed=seed)
    return [{"question_id": q.id, "question": q.paraphrases[0], "answer": a} for q, a in zip(qs, answers)]
