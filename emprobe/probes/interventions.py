"""Edits of the residual stream during a full forward (steering, directional ablation, patching).

Layer ``l`` = the output of decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); an edit at layer
``l`` changes what block ``l + 1`` (and the final norm / LM head, for the last layer) sees.

:func:`intervene` is a context manager: inside it, *every* forward of the model — margin scoring, HF
``generate``, activation reads — runs with the edits (PyTorch forward hooks). Edits are functions
``h[B, T, D] -> h'``: :func:`add_vector` (steering), :func:`project_out` (directional ablation,
``h ← h − (h·r̂) r̂``) and :func:`replace_where` (patching given values on masked positions of a fixed batch).

The same edits run on every activation backend (``hooks``, ``transformerlens``, ``nnsight``) through
:meth:`~emprobe.probes.backends.ActivationBackend.logits` / ``read``; :func:`scored_forward` takes a model (forward
hooks) or a backend.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping, Sequence

import torch

from emprobe.errors import ConfigError
from emprobe.models import decoder_layers
from emprobe.probes.backends.base import (  # noqa: F401  (block_hidden, with_hidden: re-exported)
    ActivationBackend,
    Edit,
    apply_edits,
    block_hidden,
    normalize_edits,
    with_hidden,
)


def add_vector(vector: torch.Tensor, scale: float = 1.0) -> Edit:
    """Steering: ``h + scale * vector`` at every position."""
    v = vector.detach().float()
    return lambda h: h + (scale * v).to(h.dtype).to(h.device)


def project_out(direction: torch.Tensor) -> Edit:
    """Directional ablation: remove the component along ``direction`` (normalised) at every position."""
    r = direction.detach().float()
    r = r / r.norm().clamp(min=1e-12)

    def fn(h: torch.Tensor) -> torch.Tensor:
        rr = r.to(h.dtype).to(h.device)
        return h - (h @ rr)[..., None] * rr

    return fn


def replace_where(values: torch.Tensor, mask: torch.Tensor) -> Edit:
    """Patching: ``h[mask] = values[mask]`` for one fixed batch (``values [B, T, D]``, ``mask [B, T]``)."""
    def fn(h: torch.Tensor) -> torch.Tensor:
        if h.shape != values.shape:
            raise ConfigError(f"patch values have shape {tuple(values.shape)}, the residual {tuple(h.shape)}")
        return torch.where(mask.to(h.device)[..., None], values.to(h.device, h.dtype), h)

    return fn


@contextlib.contextmanager
def intervene(model: torch.nn.Module, edits: Mapping[int, Edit | Sequence[Edit]] | None = None,
              capture: Sequence[int] = ()) -> Iterator[dict[int, torch.Tensor]]:
    """Apply ``edits`` (``{layer: edit or [edits]}``) to block outputs; yield ``{layer: [B, T, D]}`` captures.

    Captured tensors are the (edited) block outputs of the *last* forward run inside the context.
    Hooks are removed on exit, also after an error.
    """
    blocks = decoder_layers(model)
    edits = normalize_edits(edits, len(blocks), capture)
    captured: dict[int, torch.Tensor] = {}
    want = set(int(c) for c in capture)

    def hook(layer: int):
        def fn(module, args, output):
            h = block_hidden(output)
            new = apply_edits(h, edits.get(layer, ()))
            if layer in want:
                captured[layer] = new.detach()
            return None if new is h else with_hidden(output, new)
        return fn

    handles = [blocks[layer].register_forward_hook(hook(layer)) for layer in sorted(set(edits) | want)]
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()


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
