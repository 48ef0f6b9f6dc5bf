"""The activation-difference lens: what the mean activation difference (fine-tune − base) on the first tokens of
general text promotes and suppresses, read through the model's final norm and unembedding at every layer.

Following the Activation Difference Lens of Minder et al. (arXiv 2510.13900): both models read the same
general (non-training-domain) texts; at layer ``l`` (residual stream after decoder block ``l``) the difference
``δ_l = mean over texts and over positions 1..k of (h_tuned − h_base)`` is taken. Position 0 and any other
special token are left out: position 0 is the attention sink (a BOS, or — SmolLM2's tokenizer adds none — the
first text token), whose massive activations (at layer 15 of SmolLM2 ‖h‖ ≈ 23 000 there, ≈ 190 at later
positions) dominate a plain mean, and whose lens then shows only function words. The logit lens of ``δ_l`` is::

    logits_l = W_U (N(δ_l) − N(0))

with ``N`` the fine-tuned model's final norm and ``W_U`` its unembedding (for a LoRA fine-tune both are the
base model's). **How the norm is applied to a difference vector:** like the diffing toolkit's ADL, the final
norm is applied to ``δ`` itself, as if ``δ`` were a residual state. For an RMSNorm (Llama, Qwen, Gemma) this
rescales ``δ`` to unit RMS and multiplies by the norm's gain, so ``logits_l ∝ W_U (γ ⊙ δ_l)``: the ranking of
tokens does not depend on ``δ``'s size, only on its direction and the gain. ``− N(0)`` removes a LayerNorm's bias
(zero for an RMSNorm): a bias belongs to a state, not to a difference. Promoted tokens are the top of
``logits_l``, suppressed tokens the top of ``−logits_l`` (the diffing toolkit reads ``−N(δ)`` the same way).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from emprobe.analysis.diff.models import BASE
from emprobe.errors import DataError, ModelError
from emprobe.models import unwrap
from emprobe.probes.interventions import intervene

_NORM_PATHS = ("model.norm", "model.final_layernorm", "model.language_model.norm", "transformer.ln_f",
               "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm")


def final_norm(model: torch.nn.Module) -> torch.nn.Module:
    """The final norm before the unembedding (Llama/Qwen/Gemma ``model.norm``, GPT-2 ``transformer.ln_f``, ...)."""
    base = unwrap(model)
    for path in _NORM_PATHS:
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, torch.nn.Module):
            return obj
    raise ModelError(f"cannot find the final norm of {type(base).__name__} (looked for {', '.join(_NORM_PATHS)})")


def lens_logits(model: torch.nn.Module, delta: torch.Tensor) -> torch.Tensor:
    """``[L, V]`` float32 ``W_U (N(δ) − N(0))`` for ``delta`` ``[L, D]`` (see the module docstring)."""
    norm = final_norm(model)
    w = unwrap(model).get_output_embeddings().weight
    p = next(norm.parameters(), w)
    with torch.no_grad():
        d = delta.to(p.device, p.dtype)
        v = (norm(d) - norm(torch.zeros_like(d))).float()
        return (v @ w.detach().to(v.device).float().T).cpu()


@torch.inference_mode()
def first_token_stats(lm, rows: torch.Tensor, keep: torch.Tensor, layers: Sequence[int]
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(mean [L, D], mean_norm [L])`` float32: each layer's block output averaged over the ``keep`` cells of
    ``rows`` (``[B, k]`` token ids), and the mean norm of those activations."""
    dev = next(lm.model.parameters()).device
    with intervene(lm.model, capture=list(layers)) as cap:
        lm.model(input_ids=rows.to(dev), use_cache=False)
    acts = [cap[layer].float().cpu()[keep] for layer in layers]  # [n_kept, D] each
    return torch.stack([a.mean(0) for a in acts]), torch.stack([a.norm(dim=-1).mean() for a in acts])


def first_tokens(tokenizer, texts: Sequence[str], k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [n, k + 1], keep [n, k + 1])``: the first ``k + 1`` tokens of each text (the tokenizer's BOS included,
    if it adds one) and the cells averaged: positions 1..k that are not special tokens. Position 0 is the
    attention sink (a BOS, or the first text token where the tokenizer adds none): its massive activations would
    dominate the mean difference."""
    rows = []
    for t in texts:
        ids = list(tokenizer(t)["input_ids"])
        if len(ids) < k + 1:
            raise DataError(f"text {t[:40]!r} has fewer than {k + 1} tokens (lower the number of lens tokens)")
        rows.append(ids[:k + 1])
    ids = torch.tensor(rows)
    special = torch.tensor(sorted(set(tokenizer.all_special_ids)), dtype=ids.dtype)
    keep = ~torch.isin(ids, special)
    keep[:, 0] = False
    if not bool(keep.any()):
        raise DataError(f"tokens 1 to {k} of every text are special tokens")
    return ids, keep


def activation_lens(ms, variants: Sequence[str], texts: Sequence[str], layers: Sequence[int], k: int = 5,
                    top_k: int = 10) -> pd.DataFrame:
    """Tidy table of the lens at every layer for every variant: ``variant, layer, side (promoted|suppressed), rank,
    token_id, token, logit, delta_norm, base_norm`` (``delta_norm = ‖δ_l‖``; ``base_norm``: the base model's mean
    activation norm there, for scale)."""
    ids, keep = first_tokens(ms.base.tokenizer, texts, k)
    with ms.use(BASE) as lm:
        base, base_norm = first_token_stats(lm, ids, keep, layers)
    frames = []
    for v in variants:
        with ms.use(v) as lm:
            delta = first_token_stats(lm, ids, keep, layers)[0] - base
            logits = lens_logits(lm.model, delta)
        frames.append(_top_rows(ms.base.tokenizer, v, layers, logits, delta.norm(dim=-1), base_norm, top_k))
    return pd.concat(frames, ignore_index=True)


def _top_rows(tokenizer, variant: str, layers: Sequence[int], logits: torch.Tensor, delta_norm: torch.Tensor,
              base_norm: torch.Tensor, top_k: int) -> pd.DataFrame:
    rows = []
    for j, layer in enumerate(layers):
        for side, sign in (("promoted", 1.0), ("suppressed", -1.0)):
            vals, idx = (sign * logits[j]).topk(top_k)
            for rank, (val, i) in enumerate(zip(vals.tolist(), idx.tolist())):
                rows.append({"variant": variant, "layer": int(layer), "side": side, "rank": rank, "token_id": i,
                             "token": tokenizer.decode([i]), "logit": sign * val,
                             "delta_norm": float(delta_norm[j]), "base_norm": float(base_norm[j])})
    return pd.DataFrame(rows)


def top_tokens(lens: pd.DataFrame, variant: str, layer: int, side: str = "promoted", n: int = 8) -> list[str]:
    """The ``n`` top tokens of one variant's lens at ``layer``, as printed strings."""
    g = lens[(lens.variant == variant) & (lens.layer == layer) & (lens.side == side)].sort_values("rank")
    return [repr(t) for t in g.token.head(n)]


def layer_norms(lens: pd.DataFrame) -> pd.DataFrame:
    """``variant, layer, delta_norm, base_norm, relative`` (one row per variant and layer)."""
    g = lens.drop_duplicates(["variant", "layer"])[["variant", "layer", "delta_norm", "base_norm"]]
    return g.assign(relative=g.delta_norm / np.maximum(g.base_norm, 1e-12)).reset_index(drop=True)
