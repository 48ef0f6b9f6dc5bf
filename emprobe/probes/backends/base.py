"""The one activation-backend interface: ``read`` now; ``patch`` / ``steer`` build on :class:`Intervention`.

Every backend reads the same thing: for each requested layer ``l`` (the residual stream *after* decoder
block ``l``, = TransformerLens ``blocks.{l}.hook_resid_post``) and each requested position
(``last_prompt``, ``prompt_mean``, ``response_mean``; see :mod:`emprobe.probes.tokens`) one ``d_model``
vector per row. Only those pooled vectors are kept, never the full sequence of every layer, and the
forward stops after the last requested layer (the LM head never runs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence

import torch

from emprobe.errors import ConfigError
from emprobe.probes.tokens import TokenBatch

INTERVENTION_MODES = ("add", "replace")


@dataclass(frozen=True)
class Intervention:
    """Edit block ``layer``'s output (the residual stream after it) on a span of each row.

    ``mode="add"`` adds ``scale * vector``; ``mode="replace"`` overwrites the residual with ``vector``.
    ``span`` is ``all`` (every real token), ``prompt``, ``response`` or ``last_prompt``. Reads at the same
    layer see the edited residual.
    """

    layer: int
    vector: torch.Tensor
    mode: str = "add"
    span: str = "all"
    scale: float = 1.0

    def __post_init__(self) -> None:
        if self.mode not in INTERVENTION_MODES:
            raise ConfigError(f"unknown intervention mode {self.mode!r}; use add or replace")
        if self.vector.ndim != 1:
            raise ConfigError(f"intervention vector must be 1-D [d_model], got shape {tuple(self.vector.shape)}")

    def apply(self, h: torch.Tensor, batch: TokenBatch) -> torch.Tensor:
        """The edited ``[B, T, D]`` residual (a new tensor; ``h`` is not modified)."""
        if h.shape[-1] != self.vector.shape[0]:
            raise ConfigError(f"intervention vector has d={self.vector.shape[0]}, the model has d_model={h.shape[-1]}")
        m = batch.mask(self.span).to(h.device)[..., None]
        v = self.vector.to(device=h.device, dtype=h.dtype)
        if self.mode == "add":
            return h + m.to(h.dtype) * (self.scale * v)
        return torch.where(m, v.expand_as(h), h)


class ActivationBackend(ABC):
    """Reads pooled block outputs for a :class:`TokenBatch`. One instance per loaded model.

    Subclasses set ``name`` and implement :meth:`read`. They are built with
    :func:`emprobe.probes.backends.get_backend` and may cache a wrapper of the model (a TransformerLens
    bridge, an nnsight envoy tree) between calls, so reuse an instance across batches and checkpoints.
    """

    name: ClassVar[str] = "base"
    supports_interventions: ClassVar[bool] = False

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
              interventions: Sequence[Intervention]) -> dict[str, torch.Tensor]:
        """Backend-specific forward; returns ``{position: [B, len(layers), D] float32}``."""

    @torch.no_grad()
    def read(self, batch: TokenBatch, layers: Sequence[int], positions: Sequence[str],
             interventions: Sequence[Intervention] = ()) -> dict[str, torch.Tensor]:
        """``{position: [B, len(layers), d_model] float32 on CPU}`` for the (sorted, unique) ``layers``.

        Layer ``l`` = the output of decoder block ``l``. ``interventions`` edit block outputs before they
        are read (backends without ``supports_interventions`` refuse them).
        """
        if interventions and not self.supports_interventions:
            raise ConfigError(f"the {self.name} backend does not support interventions; use --backend hooks")
        layers = sorted(set(int(x) for x in layers))
        if not layers:
            raise ConfigError("no layer requested")
        batch = batch.to(self.device)
        out = self._read(batch, layers, list(positions), list(interventions))
        return {p: t.detach().to("cpu", torch.float32) for p, t in out.items()}

    def close(self) -> None:
        """Release wrappers and hooks (the model itself is left as it is)."""
