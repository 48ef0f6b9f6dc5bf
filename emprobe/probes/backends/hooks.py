"""Default backend: plain PyTorch forward hooks on the decoder blocks (``decoder_layers(model)[l]``).

Each read hook pools its block output to the requested positions at once (the full ``[B, T, D]`` tensor of a
layer is dropped as soon as the next block runs), and the hook of the last requested layer raises a
private exception that ends the forward: the later blocks, the final norm and the LM head never run. Edits are
the forward hooks of :func:`emprobe.probes.interventions.intervene`, registered before the read hooks (a hook
sees the output the hooks registered before it returned).
"""

from __future__ import annotations

import torch

from emprobe.models import decoder_layers
from emprobe.probes.backends.base import ActivationBackend, Edit, block_hidden
from emprobe.probes.tokens import TokenBatch, per_position


class _StopForward(Exception):
    """Raised by the last needed hook to end the forward early."""


class HooksBackend(ActivationBackend):
    """Forward hooks on the HF decoder blocks (reads inside ``intervene`` see its edits too)."""

    name = "hooks"

    def _forward(self, batch: TokenBatch):
        return self.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                          position_ids=batch.position_ids, use_cache=False)

    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str],
              edits: dict[int, list[Edit]]) -> dict[str, torch.Tensor]:
        from emprobe.probes.interventions import intervene

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

        with intervene(self.model, {k: v for k, v in edits.items() if k <= last}):
            handles = [blocks[layer].register_forward_hook(hook(layer)) for layer in layers]
            try:
                with torch.inference_mode():  # no autograd bookkeeping at all (cheaper than no_grad)
                    self._forward(batch)
            except _StopForward:
                pass
            finally:
                for h in handles:
                    h.remove()
        return per_position(pooled, positions)

    def _logits(self, batch: TokenBatch, edits: dict[int, list[Edit]],
                capture: list[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        from emprobe.probes.interventions import intervene

        with intervene(self.model, edits, capture) as cap, torch.inference_mode():
            logits = self._forward(batch).logits
        return logits, dict(cap)
