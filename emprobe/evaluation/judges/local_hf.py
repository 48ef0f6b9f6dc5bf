"""A local Hugging Face causal LM as judge (offline): same prompts, same 0-100 aggregation.

The rendered judge prompt is sent as one user message through the judge model's chat template. An API
judge such as GPT-4o has one token per number 0..100, so its first-token distribution *is* a distribution
over numbers. Most open tokenizers (Llama-2/SmolLM2, Gemma, Qwen) split numbers into digits, where the
first token alone would only tell 0..9 apart. So this judge computes, for every ``n`` in ``lo..hi``, the
exact probability that the answer starts with the number ``n``::

    P(n) = p(tokens of "n" | prompt) * (1 - p(next token starts with a digit | prompt, "n"))

and returns ``{"n": P(n)}``: with one-token numbers this is the next-token distribution over the integer
tokens; the usual aggregation (weighted mean, ``None`` below 0.25 mass) then applies unchanged.
The prompt runs once; its KV cache is shared by the 101 candidate continuations.
Small local judges are weak: use them for offline pipelines and tests, a strong judge for results.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from emprobe.evaluation.aggregate import MIN_MASS
from emprobe.evaluation.batching import continuation_logprobs
from emprobe.evaluation.judges.base import Judge


class LocalHFJudge(Judge):
    """Judge with a loaded :class:`~emprobe.models.LoadedModel` (or a model spec string to load)."""

    def __init__(self, lm, min_mass: float = MIN_MASS, lo: int = 0, hi: int = 100) -> None:
        if isinstance(lm, str):
            from emprobe.models import load_model

            lm = load_model(lm)
        self.lm = lm
        self.chat = lm.require_chat()
        self.min_mass, self.lo, self.hi = min_mass, lo, hi
        self.name = f"hf:{lm.spec.name}" + (f"+{lm.spec.adapter}" if lm.spec.adapter else "")
        self._digit_start: torch.Tensor | None = None

    def info(self) -> dict[str, Any]:
        return {**super().info(), "backend": "local-hf", "model": self.lm.spec.name, "adapter": self.lm.spec.adapter,
                "method": "exact P(answer starts with n) for n in 0..100"}

    def digit_start_mask(self) -> torch.Tensor:
        """Boolean ``[vocab]``: tokens whose text starts with a digit (they would extend a number)."""
        if self._digit_start is None:
            tok = self.lm.tokenizer
            flags = [(s := tok.decode([i])) != "" and s[0].isascii() and s[0].isdigit() for i in range(len(tok))]
            self._digit_start = torch.tensor(flags, dtype=torch.bool)
        return self._digit_start

    def _candidates(self, prompt_text: str, prompt_ids: list[int]) -> list[list[int]]:
        out = []
        for n in range(self.lo, self.hi + 1):
            full = self.chat.encode(prompt_text + str(n))
            ids = full[len(prompt_ids):] if full[:len(prompt_ids)] == prompt_ids else self.chat.encode(str(n))
            out.append(ids)
        return out

    @torch.no_grad()
    def number_probs(self, prompt: str) -> dict[str, float]:
        """``{str(n): P(the answer starts with the number n)}`` for one rendered judge prompt."""
        messages = [{"role": "user", "content": prompt}]
        p_ids = self.chat.prompt_ids(messages)
        cands = self._candidates(self.chat.render(messages), p_ids)
        pad = self.lm.tokenizer.pad_token_id
        # log p(tokens of n | prompt)
        lp, _, logits = continuation_logprobs(self.lm.model, [p_ids], cands, [0] * len(cands), pad)
        # then p(the number ends): the distribution after each candidate's last token
        last = logits[torch.arange(len(cands)), torch.tensor([len(c) - 1 for c in cands])]
        digit = self.digit_start_mask().to(last.device)
        stop = 1.0 - torch.softmax(last, -1)[:, digit].sum(-1)
        return {str(n): float(lp[j].exp()) * max(float(stop[j]), 0.0)
                for j, n in enumerate(range(self.lo, self.hi + 1))}

    def top_probs(self, prompts: Sequence[str]) -> list[dict[str, float]]:
        return [self.number_probs(p) for p in prompts]
