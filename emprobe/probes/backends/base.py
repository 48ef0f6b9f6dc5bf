"""The one activation-backend interface: ``read`` pooled block outputs.

Every backend reads the same thing: for each requested layer ``l`` (the residual stream *after* decoder
block ``l``, = TransformerLens ``blocks.{l}.hook_resid_post``) and each requested position
(``last_prompt``, ``prompt_mean``, ``response_mean``; see :mod:`emprobe.probes.tokens`) one ``d_model``
vector per row. Only those pooled vectors are kept, never the full sequence of every layer, and the
forward stops after the last requested layer (the LM head never runs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import torch

from emprobe.errors import ConfigError
from emprobe.probes.tokens import TokenBatch

class ActivationBackend(ABC):
    """Reads pooled block outputs for a :class:`TokenBatch`. One instance per loaded model.

    Subclasses set ``name`` and implement :meth:`read`. They are built with
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
    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str]) -> dict[str, torch.Tensor]:
        """Backend-specific forward; returns ``{position: [B, len(layers), D] float32}``."""

    @torch.no_grad()
    def read(self, batch: TokenBatch, layers: Sequence[int], positions: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{position: [B, len(layers), d_model] float32 on CPU}`` for the (sorted, unique) ``layers``.

        Layer ``l`` = the output of decoder block ``l``. To read an edited model (steered, ablated,
        patched), read inside :func:`emprobe.probes.interventions.intervene` (the ``hooks`` backend sees
        the edits of earlier-registered hooks on the same block).
        """
        layers = sorted(set(int(x) for x in layers))
        if not layers:
            raise ConfigError("no layer requested")
        batch = batch.to(self.device)
        out = self._read(batch, layers, list(positions))
        return {p: t.detach().to("cpu", torch.float32) for p, t in out.items()}

    def close(self) -> None:
        """Release wrappers and hooks (the model itself is left as it is)."""
