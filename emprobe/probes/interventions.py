"""Edits of the residual stream during a full forward (steering, directional ablation, patching).

Layer ``l`` = the output of decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); an edit at layer
``l`` changes what block ``l + 1`` (and the final norm / LM head, for the last layer) sees.

:func:`intervene` is a context manager: inside it, *every* forward of the model — margin scoring, HF
``generate``, activation reads — runs with the edits (PyTorch forward hooks). Edits are functions
``h[B, T, D] -> h'``: :func:`add_vector` (steering), :func:`project_out` (directional ablation,
``h ← h − (h·r̂) r̂``) and :func:`replace_where` (patching given values on masked positions of a fixed batch).
The first two, ``intervene``, ``block_hidden`` and ``with_hidden`` are defined in :mod:`emprobe.models.edits`
(below fine-tuning, which uses them for training-time edits) and re-exported here.

The same edits run on every activation backend (``hooks``, ``transformerlens``, ``nnsight``) through
:meth:`~emprobe.probes.backends.ActivationBackend.logits` / ``read``; :func:`scored_forward` takes a model (forward
hooks) or a backend.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from emprobe.errors import ConfigError
# the edit primitives live below fine-tuning (emprobe.models.edits), so training-time edits use the same system
from emprobe.models.edits import Edit, add_vector, block_hidden, intervene, project_out, with_hidden
from emprobe.probes.backends.base import ActivationBackend

__all__ = ["Edit", "add_vector", "block_hidden", "intervene", "project_out", "replace_where",
           "mean_response_logprobs", "scored_forward", "with_hidden"]


def replace_where(values: torch.Tensor, mask: torch.Tensor) -> Edit:
    """Patching: ``h[mask] = values[mask]`` for one fixed batch (``values [B, T, D]``, ``mask [B, T]``)."""
    def fn(h: torch.Tensor) -> torch.Tensor:
        if h.shape != values.shape:
            raise ConfigError(f"patch values have shape {tuple(values.shape)}, the residual {tuple(h.shape)}")
        return torch.where(mask.to(h.device)[..., None], values.to(h.device, h.dtype), h)

    return fn


def mean_response_logprobs(logits: torch.Tensor, batch) -> torch.Tensor:
    """Mean per-token log-prob of each row's response tokens (``[B]``), from ``[B, T, V]`` logits.

    ``batch`` is a :class:`~emprobe.probes.tokens.TokenBatch` of prompt+response items; token ``t`` of the
    response is predicted by the logits at column ``t − 1``.
    """
    from emprobe.sequences import response_logprobs as sum_and_count

    targets, mask = batch.next_token_targets("response")
    total, n = sum_and_count(logits[:, :-1], targets, mask)
    if bool((n == 0).any()):
        raise ConfigError("an item has no response tokens to score")
    return (total / n).cpu()


@torch.inference_mode()
def scored_forward(model: torch.nn.Module | ActivationBackend, batch,
                   edits: Mapping[int, Edit | Sequence[Edit]] | None = None,
                   capture: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
    """One full forward of ``batch`` under ``edits``: response log-probs ``[B]`` and captured block outputs.

    ``model``: a module (edits as forward hooks) or an :class:`ActivationBackend` (its own edit mechanism)."""
    if isinstance(model, ActivationBackend):
        logits, cap = model.logits(batch, edits, capture)
        return mean_response_logprobs(logits, batch), cap
    dev = next(model.parameters()).device
    with intervene(model, edits, capture) as cap:
        logits = model(input_ids=batch.input_ids.to(dev), attention_mask=batch.attention_mask.to(dev),
                       position_ids=batch.position_ids.to(dev), use_cache=False).logits
    return mean_response_logprobs(logits, batch), dict(cap)
