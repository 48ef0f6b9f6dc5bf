"""The one activation-backend interface: ``read`` pooled block outputs, and run a full forward (``logits``), both
under optional edits of the residual stream.

Every backend reads the same thing: for each requested layer ``l`` (the residual stream *after* decoder
block ``l``, = TransformerLens ``blocks.{l}.hook_resid_post``) and each requested position
(``last_prompt``, ``prompt_mean``, ``response_mean``; see :mod:`emprobe.probes.tokens`) one ``d_model``
vector per row. Only those pooled vectors are kept, never the full sequence of every layer, and the
forward stops after the last requested layer (the LM head never runs).

Edits are ``{layer: edit or [edits]}`` with ``edit(h [B, T, D]) -> h'`` applied to block ``l``'s output
(:func:`~emprobe.probes.interventions.add_vector` steers, :func:`~emprobe.probes.interventions.project_out`
ablates, :func:`~emprobe.probes.interventions.replace_where` patches); each backend applies them its own way
(forward hooks, TransformerLens hook points, an nnsight trace), so an edit written once runs on all three.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import torch

from emprobe.errors import ConfigError
from emprobe.models.edits import (  # noqa: F401  (the edit primitives live below fine-tuning; re-exported here)
    Edit,
    Edits,
    apply_edits,
    block_hidden,
    normalize_edits,
    with_hidden,
)
from emprobe.probes.tokens import TokenBatch

class ActivationBackend(ABC):
    """Reads pooled block outputs and runs edited forwards for a :class:`TokenBatch`. One instance per loaded model.

    Subclasses set ``name`` and implement :meth:`_read` and :meth:`_logits`. They are built with
    :func:`emprobe.probes.backends.get_backend` and may cache a wrapper of the model (a TransformerLens
    bridge, an nnsight envoy tree) between calls, so reuse an instance across batches and checkpoints.
    """

    name: ClassVar[str] = "base"

    def __init__(self, lm) -> None:
        self.lm = lm

    @property
    def model(self) -> torch.nn.Module:
        return self.lm.model

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @abstractmethod
    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str],
              edits: dict[int, list[Edit]]) -> dict[str, torch.Tensor]:
        """Backend-specific forward; returns ``{position: [B, len(layers), D] float32}``."""

    @abstractmethod
    def _logits(self, batch: TokenBatch, edits: dict[int, list[Edit]],
                capture: list[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Backend-specific full forward; returns ``(logits [B, T, V], {layer: edited block output [B, T, D]})``."""

    @torch.no_grad()
    def read(self, batch: TokenBatch, layers: Sequence[int], positions: Sequence[str],
             edits: Edits | None = None) -> dict[str, torch.Tensor]:
        """``{position: [B, len(layers), d_model] float32 on CPU}`` for the (sorted, unique) ``layers``, read after
        ``edits`` (``{layer: edit}``, see the module docstring). Layer ``l`` = the output of decoder block ``l``."""
        layers = sorted(set(int(x) for x in layers))
        if not layers:
            raise ConfigError("no layer requested")
        ed = normalize_edits(edits, self.lm.n_layers, layers)
        out = self._read(batch.to(self.device), layers, list(positions), ed)
        return {p: t.detach().to("cpu", torch.float32) for p, t in out.items()}

    @torch.no_grad()
    def logits(self, batch: TokenBatch, edits: Edits | None = None,
               capture: Sequence[int] = ()) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """One full forward of ``batch`` with ``edits`` active: ``(logits [B, T, V] float32, {layer: [B, T, D]})``,
        the captured tensors being the (edited) outputs of the ``capture`` blocks, all on CPU."""
        cap = sorted(set(int(x) for x in capture))
        ed = normalize_edits(edits, self.lm.n_layers, cap)
        logits, got = self._logits(batch.to(self.device), ed, cap)
        return logits.detach().to("cpu", torch.float32), {k: v.detach().cpu() for k, v in got.items()}

    def close(self) -> None:
        """Release wrappers and hooks (the model itself is left as it is)."""
