"""Batched forwards for scoring: left-padded rows, and continuations sharing one prompt's KV cache.

With left padding every sequence ends in the last column, so the positions that predict the last ``k``
tokens of every row are the same ``k`` columns; ``logits_to_keep`` then spares the LM head (and the
``[batch, seq, vocab]`` logits) for everything else. Position ids are derived from the attention mask,
so a padded row sees exactly the positions it would see alone.

:func:`continuation_logits` runs a batch of prompts once and scores their continuations on copies of their
KV caches (right-padded: pads only follow real tokens, so causal attention never sees them);
:func:`continuation_logprobs` turns that into each continuation's summed log-probability.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Sequence

import torch

from emprobe.sequences import pad_rows, position_ids, response_logprobs


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


#: ``route(per-row adapter ids)`` -> a context in which the model runs each row with its adapter
Router = Callable[[Sequence[int]], ContextManager]


def _routed(route: Router | None, rows: Sequence[int] | None) -> ContextManager:
    return route(rows) if route is not None and rows is not None else nullcontext()


@torch.no_grad()
def continuation_logits(model: torch.nn.Module, prompts: Sequence[Sequence[int]],
                        continuations: Sequence[Sequence[int]], owner: Sequence[int], pad_id: int,
                        adapters: Sequence[int] | None = None, route: Router | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(head [k, vocab], logits [k, width, vocab])`` in float32 for ``k`` continuations of a batch of prompts.

    The prompts run once, left-padded in one batch; continuation ``j`` then runs on a copy of the KV cache of
    prompt ``owner[j]`` (right-padded, its positions continuing the prompt's). ``head[j]`` is the
    next-token distribution after its prompt (it predicts the continuation's first token); ``logits[j, t]``
    follows token ``t`` of continuation ``j``. Mixed-adapter batches: ``adapters[g]`` is prompt ``g``'s adapter and
    ``route`` (e.g. :meth:`~emprobe.finetuning.stacked.StackedLoRA.route_rows`) applies it to the prompt's rows and
    to its continuations' rows (``owner`` must then list each adapter's continuations together).
    """
    dev = model_device(model)
    ids, pmask, pos = left_pad(prompts, pad_id, dev)
    with _routed(route, adapters):
        first = model(input_ids=ids, attention_mask=pmask, position_ids=pos, use_cache=True, logits_to_keep=1)
    idx = torch.as_tensor(list(owner), dtype=torch.long, device=dev)
    cache = first.cache
    cache.reorder_cache(idx)  # one cache row per continuation (rows repeat when a prompt has several)
    cids, cmask, _ = pad_rows(continuations, pad_id, "right")
    width = cids.shape[1]
    mask = torch.cat([pmask[idx], cmask.to(dev)], 1)
    cpos = pmask.sum(1)[idx][:, None] + torch.arange(width, device=dev)[None]
    with _routed(route, None if adapters is None else [adapters[o] for o in owner]):
        out = model(input_ids=cids.to(dev), attention_mask=mask, position_ids=cpos, cache=cache, use_cache=True)
    return first.logits[:, -1].float()[idx], out.logits.float()


def continuation_logprobs(model: torch.nn.Module, prompts: Sequence[Sequence[int]],
                          continuations: Sequence[Sequence[int]], owner: Sequence[int], pad_id: int,
                          adapters: Sequence[int] | None = None, route: Router | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(sum [k], count [k], logits [k, width, vocab])``: each continuation's summed log-probability given its
    prompt (``owner``, ``adapters`` and ``route`` as in :func:`continuation_logits`), its token count, and the
    logits after each token."""
    head, logits = continuation_logits(model, prompts, continuations, owner, pad_id, adapters, route)
    # the head predicts each continuation's first token, logits[:, t] its token t + 1
    scoring = torch.cat([head[:, None], logits[:, :-1]], 1)
    targets, mask, _ = pad_rows(continuations, pad_id, "right")
    sums, counts = response_logprobs(scoring, targets, mask)
    return sums, counts, logits
