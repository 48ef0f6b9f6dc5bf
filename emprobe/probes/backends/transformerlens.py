"""TransformerLens backend: a ``TransformerBridge`` booted around the already-loaded HF model.

TransformerLens 4.x has no ``HookedTransformer``; ``TransformerBridge.boot_transformers(path,
hf_model=...)`` wraps the local model without reloading weights. Layer ``l`` is read at
``blocks.{l}.hook_resid_post`` and the forward stops after the last requested block
(``stop_at_layer``). Edits are hooks on ``blocks.{l}.hook_resid_post`` that return the edited tensor, ahead
of the read hooks on the same point. Note: booting the bridge switches the HF model to *eager* attention in place (a
TransformerLens requirement), so later reads with any backend on the same model use eager attention.
A ``PeftModel`` is booted through its inner model, which follows ``set_adapter`` live.
"""

from __future__ import annotations

import torch

from emprobe.errors import ModelError
from emprobe.models import unwrap
from emprobe.probes.backends.base import ActivationBackend, Edit, apply_edits
from emprobe.probes.tokens import TokenBatch, per_position


def _first_line(e: BaseException, limit: int = 160) -> str:
    text = str(e).strip()
    line = text.splitlines()[0] if text else type(e).__name__
    return line if len(line) <= limit else line[:limit].rstrip() + " ..."


class TransformerLensBackend(ActivationBackend):
    """Reads ``blocks.{l}.hook_resid_post`` through a TransformerLens ``TransformerBridge``."""

    name = "transformerlens"

    def __init__(self, lm) -> None:
        super().__init__(lm)
        self._bridge = None
        self._wrapped = None

    @property
    def bridge(self):
        """The booted bridge (booted on first use, rebooted if the loaded model object changed)."""
        hf = unwrap(self.model)
        if self._bridge is None or self._wrapped is not hf:
            import warnings

            try:
                from transformer_lens.model_bridge import TransformerBridge

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._bridge = TransformerBridge.boot_transformers(
                        self.lm.path, hf_model=hf, tokenizer=self.lm.tokenizer, device=str(self.device),
                        dtype=next(hf.parameters()).dtype)
            except Exception as e:  # unsupported architectures, missing configs
                raise ModelError(f"the transformerlens backend cannot wrap {type(hf).__name__}: "
                                 f"{_first_line(e)}") from None
            self._wrapped = hf
        return self._bridge

    @staticmethod
    def _edit_hooks(edits: dict[int, list[Edit]], capture: list[int], store: dict[int, torch.Tensor]) -> list:
        """``fwd_hooks`` applying ``edits`` at each edited layer and keeping the (edited) ``capture`` layers."""
        def make(layer: int):
            def fn(tensor, hook):
                new = apply_edits(tensor, edits.get(layer, ()))
                if layer in capture:
                    store[layer] = new.detach()
                return new
            return fn

        return [(f"blocks.{layer}.hook_resid_post", make(layer)) for layer in sorted(set(edits) | set(capture))]

    def _run(self, batch: TokenBatch, fwd_hooks: list, **kw):
        return self.bridge.run_with_hooks(batch.input_ids, attention_mask=batch.attention_mask,
                                          position_ids=batch.position_ids, fwd_hooks=fwd_hooks, **kw)

    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str],
              edits: dict[int, list[Edit]]) -> dict[str, torch.Tensor]:
        pooled: dict[int, torch.Tensor] = {}

        def make(layer: int):
            def fn(tensor, hook):
                pooled[layer] = batch.pool(tensor, positions)
            return fn

        edit_hooks = self._edit_hooks({k: v for k, v in edits.items() if k <= layers[-1]}, [], {})
        self._run(batch, edit_hooks + [(f"blocks.{layer}.hook_resid_post", make(layer)) for layer in layers],
                  stop_at_layer=layers[-1] + 1, return_type=None)
        return per_position([pooled[layer] for layer in layers], positions)

    def _logits(self, batch: TokenBatch, edits: dict[int, list[Edit]],
                capture: list[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        store: dict[int, torch.Tensor] = {}
        logits = self._run(batch, self._edit_hooks(edits, capture, store), return_type="logits")
        return logits, store

    def close(self) -> None:
        self._bridge = self._wrapped = None
