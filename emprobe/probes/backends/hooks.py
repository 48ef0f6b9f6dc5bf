"""Default backend: plain PyTorch forward hooks on the decoder blocks (``decoder_layers(model)[l]``).

Each hook pools its block output to the requested positions at once (the full ``[B, T, D]`` tensor of a
layer is dropped as soon as the next block runs), and the hook of the last requested layer raises a
private exception that ends the forward: the later blocks, the final norm and the LM head never run.
"""

from __future__ import annotations

from typing import Sequence

import torch

from emprobe.models import decoder_layers
from emprobe.probes.backends.base import ActivationBackend, Intervention
from emprobe.probes.tokens import TokenBatch


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward early."""


class HooksBackend(ActivationBackend):
    """Forward hooks on the HF decoder blocks; supports ``add``/``replace`` interventions."""

    name = "hooks"
    supports_interventions = True

    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str],
              interventions: Sequence[Intervention]) -> dict[str, torch.Tensor]:
        blocks = decoder_layers(self.model)
        last = layers[-1]
        edits: dict[int, list[Intervention]] = {}
        for iv in interventions:
            if iv.layer <= last:
                edits.setdefault(iv.layer, []).append(iv)
        slot = {layer: j for j, layer in enumerate(layers)}
        pooled: list[torch.Tensor | None] = [None] * len(layers)

        def hook(layer: int):
            def fn(module, args, output):
                h = output[0] if isinstance(output, tuple) else output
                edited = h
                for iv in edits.get(layer, ()):
                    edited = iv.apply(edited, batch)
                if layer in slot:
                    pooled[slot[layer]] = batch.pool(edited, positions)
                if layer == last:
                    raise _StopForward
                if edited is not h:
                    return (edited, *output[1:]) if isinstance(output, tuple) else edited
                return None
            return fn

        handles = [blocks[layer].register_forward_hook(hook(layer)) for layer in sorted(set(layers) | set(edits))]
        try:
            with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad)
                self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, use_cache=False)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        stacked = torch.stack(pooled, 1)  # [B, L, P, D]
        return {p: stacked[:, :, k] for k, p in enumerate(positions)}
