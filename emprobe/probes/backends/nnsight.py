"""nnsight backend: ``TransformersModel`` (nnsight's ``LanguageModel``) around the loaded HF model.

Inside one ``trace`` each requested block's ``.output`` is pooled to the requested positions and only the
pooled tensors are saved; ``tracer.stop()`` ends the forward after the last requested block. Edits replace a
block's ``.output`` inside the same trace (blocks visited in forward order), so steering, ablation and patching
run through nnsight too — locally; with
``remote=True`` the trace runs on NDIF (needs a hub id the service hosts and an NDIF API key); the pooling
then happens server side too (remote edits are untested without NDIF access). A ``PeftModel`` is wrapped through its inner model (LoRA layers are injected
in place, so ``set_adapter`` switches stay live).
"""

from __future__ import annotations

import torch

from emprobe.errors import ConfigError, ModelError
from emprobe.models import decoder_layers, unwrap
from emprobe.probes.backends.base import ActivationBackend, Edit, apply_edits, block_hidden, with_hidden
from emprobe.probes.backends.transformerlens import _first_line
from emprobe.probes.tokens import TokenBatch, per_position


class NNsightBackend(ActivationBackend):
    """Reads decoder-block outputs inside an nnsight trace."""

    name = "nnsight"

    def __init__(self, lm, remote: bool = False) -> None:
        super().__init__(lm)
        self.remote = remote
        self._envoy = None
        self._wrapped = None
        self._layers_path: str | None = None

    def _wrap(self):
        import warnings

        from nnsight.modeling.transformers import TransformersModel

        tok = self.lm.tokenizer
        side = tok.padding_side
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if self.remote:
                    from pathlib import Path

                    name = self.lm.spec.name
                    if Path(name).exists() or self.lm.spec.is_builtin:
                        raise ConfigError(f"`remote` needs a hub id that NDIF hosts, not the local model {name!r}")
                    return TransformersModel(name, tokenizer=tok)
                return TransformersModel(unwrap(self.model), tokenizer=tok)  # a PeftModel's inner model
        except ConfigError:
            raise
        except Exception as e:
            raise ModelError(f"the nnsight backend cannot wrap {type(self.model).__name__}: {_first_line(e)}") from None
        finally:
            tok.padding_side = side  # nnsight sets padding_side="left" in place; emprobe pads itself

    @property
    def envoy(self):
        hf = unwrap(self.model)
        if self._envoy is None or self._wrapped is not hf:
            self._envoy = self._wrap()
            self._wrapped = hf
            blocks = decoder_layers(hf)
            self._layers_path = next(n for n, m in hf.named_modules() if m is blocks)
        return self._envoy

    def _blocks(self):
        obj = self.envoy
        for part in self._layers_path.split("."):
            obj = getattr(obj, part)
        return obj

    def _trace(self, batch: TokenBatch):
        kw = {"remote": True} if self.remote else {}
        return self.envoy.trace(input_ids=batch.input_ids, attention_mask=batch.attention_mask,
                                position_ids=batch.position_ids, **kw)

    @staticmethod
    def _edit(block, edits: list[Edit]) -> torch.Tensor:
        """Replace ``block``'s output by its edited hidden state (inside a trace); returns that state."""
        out = block.output
        new = apply_edits(block_hidden(out), edits)
        if edits:
            block.output = with_hidden(out, new)
        return new

    def _read(self, batch: TokenBatch, layers: list[int], positions: list[str],
              edits: dict[int, list[Edit]]) -> dict[str, torch.Tensor]:
        import nnsight

        blocks = self._blocks()
        with self._trace(batch) as tracer:
            pooled = []
            for layer in sorted({*layers, *(k for k in edits if k <= layers[-1])}):  # in forward order
                h = self._edit(blocks[layer], edits.get(layer, []))
                if layer in layers:
                    pooled.append(batch.pool(h, positions))
            saved = nnsight.save(pooled)
            tracer.stop()
        return per_position(saved, positions)

    def _logits(self, batch: TokenBatch, edits: dict[int, list[Edit]],
                capture: list[int]) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        import nnsight

        blocks = self._blocks()
        with self._trace(batch):
            kept = {}
            for layer in sorted({*edits, *capture}):  # in forward order
                h = self._edit(blocks[layer], edits.get(layer, []))
                if layer in capture:
                    kept[layer] = h
            saved = nnsight.save((self.envoy.output.logits, kept))
        return saved

    def close(self) -> None:
        self._envoy = self._wrapped = None
