"""Batched forwards for scoring: left-padded rows, and continuations sharing one prompt's KV cache.

With left padding every sequence ends in the last column, so the positions that predict the last ``k``
tokens of every row are the same ``k`` columns; ``logits_to_keep`` then spares the LM head (and the
``[batch, seq, vocab]`` logits) for everything else. Position ids are derived from the attention mask,
so a padded row sees exactly the positions it would see alone.

:func:`continuation_logits` runs a prompt once and scores several continuations of it on copies of its
KV cache (right-padded: pads only follow real tokens, so causal attention never sees them).
"""

from __future__ import annotations

from typing import Sequence

import torch

from emprobe.sequences import pad_rows, position_ids


def left_pad(rows: Sequence[Sequence[int]], pad_id: int, device: torch.device | str = "cpu"
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask, position_ids)`` for left-padded ``rows``."""
    ids, mask, start = pad_rows(rows, pad_id, "left")
    return ids.to(device), mask.to(device), position_ids(start, ids.shape[1]).to(device)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def last_logits(model: torch.nn.Module, rows: Sequence[Sequence[int]], pad_id: int, keep: int) -> torch.Tensor:
    """Float32 logits ``[batch, keep, vocab]`` at the last ``keep`` positions of each left-padded row.

    ``logits[:, j]`` is the next-token distribution after the token in column ``width - keep + j``.
    """
    ids, mask, pos = left_pad(rows, pad_id, model_device(model))
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=keep, use_cache=False)
    return out.logits[:, -keep:].float()


@torch.no_grad()
def continuation_logits(model: torch.nn.Module, prompt: Sequence[int], continuations: Sequence[Sequence[int]],
                        pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head [vocab], logits [k, width, vocab])`` in float32 for ``k`` continuations of one prompt.

    ``head`` is the next-token distribution after the prompt (it predicts each continuation's first
    token); ``logits[j, t]`` follows token ``t`` of continuation ``j``.
    """
    dev = model_device(model)
    first = model(input_ids=torch.tensor([list(prompt)], device=dev), use_cache=True, logits_to_keep=1)
    cache = first.cache
    k, p = len(continuations), len(prompt)
    cache.batch_repeat_interleave(k)
    ids, cmask, _ = pad_rows(continuations, pad_id, "right")
    width = ids.shape[1]
    mask = torch.cat([torch.ones((k, p), dtype=torch.long), cmask], 1)
    pos = torch.arange(p, p + width)[None].expand(k, -1)
    out = model(input_ids=ids.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), cache=cache,
                use_cache=True)
    return first.logits[0, -1].float(), out.logits.float()
