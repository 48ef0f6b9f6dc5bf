"""Batched sampling of chat answers with HF ``generate`` (left padding, chat template applied).

Conversations are templated with the model's :class:`~emprobe.models.ChatFormatter` (a ``system``
message, when present, is kept), grouped by prompt length to waste little padding, and returned in
input order. Sampling is seeded once per call (``torch.manual_seed(seed)``): a call is reproducible,
but which random numbers an answer draws depends on the batch it lands in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from emprobe.models.loading import LoadedModel
from emprobe.sequences import length_batches, pad_rows


@dataclass(frozen=True)
class Generation:
    """One generated answer: its text, its number of new tokens, and whether it ended with end-of-sequence."""

    text: str
    n_tokens: int
    finished: bool


def _eos_ids(lm: LoadedModel) -> set[int]:
    eos = getattr(getattr(lm.model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = lm.tokenizer.eos_token_id
    return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}


@torch.no_grad()
def generate_chat_details(
    lm: LoadedModel,
    conversations: Sequence[Sequence[dict[str, str]]],
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 8,
) -> list[Generation]:
    """A :class:`Generation` for each conversation; greedy when ``temperature`` is 0."""
    chat = lm.require_chat()
    tok = lm.tokenizer
    device = next(lm.model.parameters()).device
    eos = _eos_ids(lm)
    torch.manual_seed(seed)
    prompts = [chat.prompt_ids(c) for c in conversations]
    out: list[Generation | None] = [None] * len(prompts)
    kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)
    if temperature > 0:
        kw.update(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    for idx in length_batches([len(p) for p in prompts], batch_size):  # longest first, as before
        # left padding: the last column is every prompt's last token
        ids, mask, _ = pad_rows([prompts[i] for i in idx], tok.pad_token_id, "left")
        width = ids.shape[1]
        gen = lm.model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kw)
        for i, g in zip(idx, gen[:, width:].tolist()):
            stop = next((k for k, t in enumerate(g) if t in eos), None)
            new = g if stop is None else g[:stop]
            out[i] = Generation(tok.decode(new, skip_special_tokens=True).strip(), len(new), stop is not None)
    return out  # type: ignore[return-value]


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
    return [g.text for g in generate_chat_details(lm, conversations, max_new_tokens, temperature, top_p, seed,
                                                  batch_size)]


def answer_questions(lm: LoadedModel, questions, n_questions: int | None = None, max_new_tokens: int = 48,
                     temperature: float = 0.0, seed: int = 0, threads: int | None = None) -> list[dict]:
    """First-paraphrase answers to the first ``n_questions`` (>= 1; ``None``: all) of a question set."""
    from emprobe.validate import check_args

    check_args(n_questions=n_questions, max_new_tokens=max_new_tokens, temperature=temperature)
    if threads:
        torch.set_num_threads(threads)
    qs = list(questions)[:n_questions]
    answers = generate_chat(lm, [q.messages(0) for q in qs], max_new_tokens, temperature, seed=seed)
    return [{"question_id": q.id, "question": q.paraphrases[0], "answer": a} for q, a in zip(qs, answers)]
