"""Tokenised training data: assistant-only labels and a padding collator.

Every conversation is tokenised with :meth:`emprobe.models.ChatFormatter.prompt_response_ids`, so the
prompt part is exactly the chat-templated prompt (generation header included) that evaluation and probes
see, and only the last assistant turn (with the template's end-of-turn tokens) carries a loss. Prompt
positions get label ``-100``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from emprobe.errors import ConfigError
from emprobe.sequences import IGNORE_INDEX, pad_rows, response_logprobs


@dataclass
class TokenizedDataset(torch.utils.data.Dataset):
    """``input_ids`` / ``labels`` rows; ``n_prompt`` leading labels of each row are ``-100``."""

    rows: list[dict[str, list[int]]]
    n_truncated: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.rows[i]

    @property
    def n_tokens(self) -> int:
        return sum(len(r["input_ids"]) for r in self.rows)

    @property
    def n_response_tokens(self) -> int:
        return sum(sum(1 for x in r["labels"] if x != IGNORE_INDEX) for r in self.rows)

    def stats(self) -> dict[str, Any]:
        lengths = [len(r["input_ids"]) for r in self.rows]
        return {"n": len(self.rows), "tokens": self.n_tokens, "response_tokens": self.n_response_tokens,
                "mean_length": round(sum(lengths) / len(lengths), 2), "max_length": max(lengths),
                "n_truncated": self.n_truncated}


def tokenize_chat(dataset, chat, max_length: int) -> TokenizedDataset:
    """Tokenise a :class:`~emprobe.data.ChatDataset` for assistant-only loss.

    A response longer than the room left after its prompt is truncated (counted in ``n_truncated``);
    a prompt that leaves no room for a single response token raises :class:`ConfigError`.
    """
    rows, too_long, longest, truncated = [], 0, 0, 0
    for ex in dataset:
        ids, n_prompt = chat.prompt_response_ids(ex.prompt_messages, ex.response)
        longest = max(longest, n_prompt)
        if n_prompt >= max_length:
            too_long += 1
            continue
        if len(ids) > max_length:
            ids, truncated = ids[:max_length], truncated + 1
        rows.append({"input_ids": ids, "labels": [IGNORE_INDEX] * n_prompt + ids[n_prompt:]})
    if too_long:
        raise ConfigError(f"`max_length` {max_length} is shorter than {too_long} of {len(dataset)} prompts "
                          f"(longest prompt {longest} tokens); raise `max_length`")
    return TokenizedDataset(rows, truncated)


@dataclass
class PadCollator:
    """Right-pad ``input_ids`` with ``pad_id`` and ``labels`` with ``-100``; add the attention mask."""

    pad_id: int

    def __call__(self, rows: Sequence[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        ids, mask, _ = pad_rows([r["input_ids"] for r in rows], self.pad_id, "right")
        labels = pad_rows([r["labels"] for r in rows], IGNORE_INDEX, "right")[0]
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def response_loss_sum(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      labels: torch.Tensor, per_row: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum of cross-entropy over response tokens, number of response tokens)`` for one batch (per row with
    ``per_row``: tensors ``[batch]``).

    The LM head only runs from the position before the batch's first response token on (transformers'
    ``logits_to_keep``), instead of over every prompt position: on a 49k-vocabulary model with prompts
    about half of each sequence that is ~10 % of a training step. Models without ``logits_to_keep`` get a
    full forward.
    """
    targets = labels[:, 1:]
    has = targets != IGNORE_INDEX
    if _keeps_logits(model):
        start = int(has.int().argmax(dim=1).min())  # first predicted position of any row
        keep = torch.arange(start, targets.shape[1], device=input_ids.device)
        logits = model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=keep).logits
        targets = targets[:, start:]
    else:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    logprob, n = response_logprobs(logits, targets, targets != IGNORE_INDEX)
    return (-logprob, n) if per_row else (-logprob.sum(), n.sum())


def _keeps_logits(model: torch.nn.Module) -> bool:
    import inspect

    from emprobe.models.arch import unwrap

    base = unwrap(getattr(model, "module", model))  # DDP -> PeftModel -> transformers model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


@torch.no_grad()
def example_losses(model: torch.nn.Module, data: TokenizedDataset, batch_size: int, pad_id: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(summed cross-entropy, response-token count)`` per example of ``data``, in its order.

    Runs in eval mode (no dropout) and restores the previous mode. Examples are batched by length to
    limit padding.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = sorted(range(len(data)), key=lambda i: len(data[i]["input_ids"]))
    collate = PadCollator(pad_id)
    sums, counts = np.zeros(len(data)), np.zeros(len(data), dtype=np.int64)
    try:
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            b = {k: v.to(device) for k, v in collate([data[i] for i in idx]).items()}
            loss, n = response_loss_sum(model, b["input_ids"], b["attention_mask"], b["labels"], per_row=True)
            sums[idx], counts[idx] = loss.double().cpu().numpy(), n.cpu().numpy()
    finally:
        model.train(was_training)
    return sums, counts


def response_loss(model: torch.nn.Module, data: TokenizedDataset, batch_size: int, pad_id: int) -> tuple[float, int]:
    """Token-weighted mean cross-entropy on the response tokens of ``data``: ``(loss, n_tokens)``."""
    sums, counts = example_losses(model, data, batch_size, pad_id)
    return float(sums.sum() / max(int(counts.sum()), 1)), int(counts.sum())
