"""Default backend: plain PyTorch forward hooks on the decoder blocks (``decoder_layers(model)[l]``).

Each hook pools its block output to the requested positions at once (the full ``[B, T, D]`` tensor of a
layer is dropped as soon as the next block runs), and the hook of the last requested layer raises a
private exception that ends the forward: the later blocks, the final norm and the LM head never run.
"""

from __future__ import annotations

import torch

from emprobe.models import decoder_layers
from emprobe.probes.backends.base import ActivationBackend
from emprobe.probes.interventions import block_hidden
from emprobe.probes.tokens import TokenBatch, per_position


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward early."""


class HooksBackend(ActivationBackend):
    """Forward hooks on the HF decoder blocks (reads inside ``intervene`` see its edits)."""

    name = "hooks"

    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str]) -> dict[str, torch.Tensor]:
        blocks = decoder_layers(self.model)
        last = layers[-1]
        slot = {layer: j for j, layer in enumerate(layers)}
        pooled: list[torch.Tensor | None] = [None] * len(layers)

        def hook(layer: int):
            def fn(module, args, output):
                pooled[slot[layer]] = batch.pool(block_hidden(output), positions)
                if layer == last:
                    raise _StopForward
            return fn

        handles = [blocks[layer].register_forward_hook(hook(layer)) for layer in layers]
        try:
            with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad)
                self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                           position_ids=batch.position_ids, use_cache=False)
        except _StopForward:
            pass
        finally:
            for h in handles:
                h.remove()
        return per_position(pooled, positions)
