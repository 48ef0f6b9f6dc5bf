"""Token rows as padded batches, and the log-probability of response tokens: the one implementation of each.

Every stage pads and scores through these (fine-tuning's collator and loss, the margin score, activation
extraction, interventions), so padding conventions and log-prob arithmetic cannot drift apart:

* :func:`pad_rows`: rows of token ids -> ``(input_ids, attention_mask, start)`` padded on either side;
  ``start[b]`` is row ``b``'s first real column. :func:`position_ids` gives every row positions
  ``0..n-1`` on its real tokens, so a padded row sees exactly the positions it would see alone.
* :func:`length_batches`: indices grouped longest first into batches of similar length (little padding,
  an out-of-memory error early rather than late).
* :func:`response_logprobs`: ``(sum, count)`` per row of ``log p(target)`` over masked columns, from
  logits already aligned with their targets (column ``t`` of the logits predicts ``targets[:, t]``).
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from emprobe.errors import ConfigError

PADDING_SIDES = ("right", "left")
IGNORE_INDEX = -100


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, side: str = "right", width: int | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(ids [B, W], attention_mask [B, W], start [B])``: ``rows`` padded with ``pad_id`` on ``side``.

    ``width`` defaults to the longest row.
    """
    if side not in PADDING_SIDES:
        raise ConfigError(f"unknown padding side {side!r}; use right or left")
    if not rows:
        raise ConfigError("no rows to pad")
    width = max(map(len, rows)) if width is None else width
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    start = torch.zeros(len(rows), dtype=torch.long)
    for i, row in enumerate(rows):
        s = width - len(row) if side == "left" else 0
        ids[i, s:s + len(row)] = torch.as_tensor(list(row), dtype=torch.long)
        mask[i, s:s + len(row)] = 1
        start[i] = s
    return ids, mask, start


def position_ids(start: torch.Tensor, width: int) -> torch.Tensor:
    """``[B, W]`` positions: ``0..n-1`` on each row's real tokens from column ``start[b]`` (0 before it)."""
    return (torch.arange(width, device=start.device)[None] - start[:, None]).clamp(min=0)


def length_batches(lengths: Sequence[int], batch_size: int, sort: bool = True) -> Iterator[list[int]]:
    """Indices in batches of ``batch_size``: longest first when ``sort`` (ties keep their order)."""
    if batch_size < 1:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else list(range(len(lengths)))
    for b0 in range(0, len(order), batch_size):
        yield order[b0:b0 + batch_size]


def response_logprobs(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum [B], count [B])`` of ``log softmax(logits[b, t])[targets[b, t]]`` over columns where ``mask``.

    ``logits`` is ``[B, T, V]`` (any dtype; scored in float32), ``targets`` and ``mask`` ``[B, T]``: the
    caller aligns them (for a causal LM, ``logits[:, :-1]`` with ``input_ids[:, 1:]``). Differentiable
    (the fine-tuning loss is ``-sum``); the mean per-token log-prob is ``sum / count``.
    """
    if logits.shape[:2] != targets.shape or targets.shape != mask.shape:
        raise ConfigError(f"logits {tuple(logits.shape)}, targets {tuple(targets.shape)} and mask "
                          f"{tuple(mask.shape)} do not line up")
    mask = mask.to(logits.device).bool()
    tgt = torch.where(mask, targets.to(logits.device), torch.full_like(targets, IGNORE_INDEX, device=logits.device))
    nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), tgt.reshape(-1),
                                            ignore_index=IGNORE_INDEX, reduction="none")
    return -nll.view(tgt.shape).sum(1), mask.sum(1)
