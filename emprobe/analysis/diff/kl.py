"""Per-token KL(base ‖ fine-tune) of the next-token distributions on the same tokens.

At every scored position ``t`` (a response token of a chat item, or a token of a raw text), with ``p`` the base
model's and ``q`` the fine-tune's next-token distribution given the same prefix::

    KL(p ‖ q) = Σ_v p(v) (log p(v) − log q(v))        (nats; 0 exactly for identical models)

The expectation is under the base model, so on the base model's own answers the mean per-token KL estimates how
far the fine-tune moved the distribution the base actually produces. Log-softmax runs in float32 on the scored
columns only (the vocabulary axis is the memory cost).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from emprobe.analysis.diff.models import BASE
from emprobe.errors import DataError
from emprobe.probes.tokens import Encoded, TokenBatch, make_batches


def text_items(tokenizer, texts: Sequence[str], max_tokens: int) -> list[Encoded]:
    """Raw texts (no chat template; the tokenizer adds its BOS where it has one), cut to ``max_tokens``; every
    token after the first is scored (``n_prompt = 0``)."""
    out = []
    for t in texts:
        ids = list(tokenizer(t)["input_ids"])[:max_tokens]
        if len(ids) < 2:
            raise DataError(f"text {t[:40]!r} has fewer than 2 tokens")
        out.append(Encoded(tuple(ids), 0))
    return out


def chat_items(chat, conversations: Sequence[Sequence[dict]], responses: Sequence[str]) -> list[Encoded]:
    """Templated prompt + response items; the response tokens (end-of-turn included) are scored."""
    return [Encoded(*chat.prompt_response_ids(list(c), r)) for c, r in zip(conversations, responses)]


@torch.inference_mode()
def scored_logprobs(lm, batch: TokenBatch, mask: torch.Tensor) -> torch.Tensor:
    """``[N, V]`` float32 log-probs of the next token at the ``N`` columns where ``mask`` (``[B, T-1]``) holds."""
    dev = next(lm.model.parameters()).device
    b = batch.to(dev)
    logits = lm.model(input_ids=b.input_ids, attention_mask=b.attention_mask, position_ids=b.position_ids,
                      use_cache=False).logits[:, :-1]
    return torch.log_softmax(logits[mask.to(dev)].float(), dim=-1).cpu()


def kl_from_logprobs(lp_p: torch.Tensor, lp_q: torch.Tensor) -> torch.Tensor:
    """``Σ_v p (log p − log q)`` per row of two ``[N, V]`` log-prob tensors."""
    if lp_p.shape != lp_q.shape:
        raise DataError(f"the models' vocabularies differ ({lp_p.shape[-1]} vs {lp_q.shape[-1]} tokens)")
    return (lp_p.exp() * (lp_p - lp_q)).sum(-1)


def token_kl(ms, variants: Sequence[str], items: Sequence[Encoded], batch_size: int = 8) -> dict[str, list[np.ndarray]]:
    """``{variant: [per-item array of per-position KL(base ‖ variant)]}`` over the scored tokens of ``items``.

    ``ms`` is a :class:`~emprobe.analysis.diff.models.ModelSet`; the base side runs once per batch.
    """
    tok = ms.base.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out: dict[str, list] = {v: [None] * len(items) for v in variants}
    for b in make_batches(list(items), batch_size, pad, "right"):
        _, mask = b.next_token_targets("response")
        counts = mask.sum(1).tolist()
        with ms.use(BASE) as lm:
            lp_base = scored_logprobs(lm, b, mask)
        for v in variants:
            with ms.use(v) as lm:
                kl = kl_from_logprobs(lp_base, scored_logprobs(lm, b, mask))
            for i, row in zip(b.index, torch.split(kl, counts)):
                out[v][i] = row.numpy().astype(np.float64)
    return out
