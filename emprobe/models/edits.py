"""Residual-stream edits during a full forward: the primitives under steering, ablation and training-time edits.

Layer ``l`` = the output of decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); an edit at layer ``l``
changes what block ``l + 1`` (and the final norm / LM head, for the last layer) sees.

:func:`intervene` is a context manager: inside it, *every* forward of the model runs with the edits. Edits are
functions ``h[B, T, D] -> h'``: :func:`add_vector` (steering) and :func:`project_out` (directional ablation,
``h ← h − (h·r̂) r̂``). They live here, below fine-tuning and probes, so that both use the one system
(:mod:`emprobe.probes.interventions` re-exports them and adds patching).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Mapping, Sequence

import torch

from emprobe.errors import ConfigError
from emprobe.models.arch import decoder_layers

Edit = Callable[[torch.Tensor], torch.Tensor]
Edits = Mapping[int, "Edit | Sequence[Edit]"]


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


def normalize_edits(edits: Edits | None, n_layers: int, capture: Sequence[int] = ()) -> dict[int, list[Edit]]:
    """``{layer: [edits]}`` sorted by layer; a layer outside ``0..n_layers-1`` (edited or captured) raises."""
    out = {int(k): (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in (edits or {}).items()}
    for layer in [*out, *capture]:
        if not 0 <= int(layer) < n_layers:
            raise ConfigError(f"unknown layer {layer}: valid layers are 0..{n_layers - 1} "
                              "(layer l = residual stream after decoder block l)")
    return dict(sorted(out.items()))


def apply_edits(h: torch.Tensor, edits: Sequence[Edit]) -> torch.Tensor:
    """``h`` through each edit in turn."""
    for e in edits:
        h = e(h)
    return h


def block_hidden(output):
    """The hidden state ``[B, T, D]`` in a decoder block's output (HF blocks return it alone or first in a tuple)."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output, hidden: torch.Tensor):
    """``output`` with its hidden state replaced by ``hidden`` (same container: tensor or tuple)."""
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


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
