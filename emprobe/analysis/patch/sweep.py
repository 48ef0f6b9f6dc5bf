"""The cross-model patching sweep behind :func:`emprobe.analysis.patch.compute.patch` (pure computation, no prose).

For each batch of (question, reference) items both models run once to capture their block outputs; then,
for every (direction, layer, span), the destination model runs again with its residual stream at that
layer replaced by the source model's activation on the span (``last_prompt`` or every ``prompt`` column).
The control replaces it with *another item's* activation from the same source model (rows permuted within
the batch, aligned on the span's last column). Margins are per question (misaligned minus aligned mean
reference log-prob), fractions of the gap restored come with a bootstrap CI over questions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from emprobe.analysis.stats.subspace import control_rng
from emprobe.errors import ConfigError
from emprobe.probes.interventions import replace_where, scored_forward

SPANS = ("last_prompt", "prompt")
PATCH_DIRECTIONS = {"base→tuned": ("base", "tuned"), "tuned→base": ("tuned", "base")}


def check_directions(directions: Sequence[str]) -> tuple[str, ...]:
    unknown = set(directions) - set(PATCH_DIRECTIONS)
    if unknown or not directions:
        raise ConfigError(f"patch directions must be among {list(PATCH_DIRECTIONS)}, got {list(directions)}")
    return tuple(directions)


def _margins(rows: pd.DataFrame, lp: np.ndarray) -> pd.Series:
    """Per-question margin from per-reference mean log-probs."""
    g = rows.assign(lp=lp).groupby(["question_id", "kind"]).lp.mean().unstack("kind")
    return g["misaligned"] - g["aligned"]


def _frac(patched: pd.Series, start: pd.Series, target: pd.Series) -> float:
    gap = float((target - start).mean())
    return float((patched - start).mean()) / gap if abs(gap) > 1e-12 else float("nan")


def _boot_frac(m: pd.Series, start: pd.Series, target: pd.Series, seed: int, n_boot: int = 1000
               ) -> tuple[float, float]:
    """95% percentile bootstrap CI (over questions) of the fraction of the gap restored."""
    rng = np.random.default_rng(seed)
    mv, sv, tv = m.to_numpy(), start.loc[m.index].to_numpy(), target.loc[m.index].to_numpy()
    idx = rng.integers(0, len(mv), size=(n_boot, len(mv)))
    gap = (tv[idx] - sv[idx]).mean(1)
    ok = np.abs(gap) > 1e-12
    vals = (mv[idx] - sv[idx]).mean(1)[ok] / gap[ok]
    return (float(np.quantile(vals, 0.025)), float(np.quantile(vals, 0.975))) if len(vals) else (float("nan"),) * 2


def _shuffled(values: torch.Tensor, b, span: str, perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Values of another row, aligned on the span's last column (so the shapes of both spans still fit)."""
    lo, hi = b.span(span)
    out = values.clone()
    mask = torch.zeros_like(b.mask(span))
    for r in range(b.size):
        src = int(perm[r])
        width = min(int(hi[r] - lo[r]), int(hi[src] - lo[src]))
        out[r, int(hi[r]) - width:int(hi[r])] = values[src, int(hi[src]) - width:int(hi[src])]
        mask[r, int(hi[r]) - width:int(hi[r])] = True
    return out, mask


def _batches(base_lm, tuned_lm, questions, batch_size: int):
    from emprobe.evaluation.margin import reference_items
    from emprobe.probes.tokens import Encoded, make_batches

    rows, items = reference_items(tuned_lm, questions)
    if [list(i) for i, _ in items] != [list(i) for i, _ in reference_items(base_lm, questions)[1]]:
        raise ConfigError("base and fine-tuned models tokenize the references differently (different tokenizers?)")
    pad = tuned_lm.tokenizer.pad_token_id if tuned_lm.tokenizer.pad_token_id is not None else 0
    return rows, make_batches([Encoded(tuple(i), n) for i, n in items], batch_size, pad, "right")


def patch_logprobs(base_lm, tuned_lm, questions, layers: Sequence[int], spans: Sequence[str],
                   directions: Sequence[str], batch_size: int, seed: int) -> tuple[pd.DataFrame, dict, dict]:
    """``(rows, clean, patched)``: the reference rows, clean log-probs per model and patched log-probs per
    ``(direction, layer, span, control)``, each ``[n_references]``."""
    rows, batches = _batches(base_lm, tuned_lm, questions, batch_size)
    n = len(rows)
    clean = {"base": np.zeros(n), "tuned": np.zeros(n)}
    patched = {(d, l_, s, c): np.zeros(n) for d in directions for l_ in layers for s in spans for c in (False, True)}
    rng = control_rng(seed)
    models = {"base": base_lm.model, "tuned": tuned_lm.model}
    for b in batches:
        idx = np.array(b.index)
        acts = {}
        for name, model in models.items():
            lp, acts[name] = scored_forward(model, b, capture=layers)
            clean[name][idx] = lp.numpy()
        perm = torch.as_tensor(rng.permutation(b.size)) if b.size > 1 else torch.zeros(1, dtype=torch.long)
        for (direction, layer, span, control), out in patched.items():
            src, dst = PATCH_DIRECTIONS[direction]
            values, mask = acts[src][layer], b.mask(span)
            if control:  # another item's activation (the control): mismatched prompt, same model
                values, mask = _shuffled(values, b, span, perm)
            out[idx] = scored_forward(models[dst], b, {layer: replace_where(values, mask)})[0].numpy()
    return rows, clean, patched


def sweep(base_lm, tuned_lm, questions, layers: Sequence[int], spans: Sequence[str] = SPANS,
                directions: Sequence[str] = tuple(PATCH_DIRECTIONS), batch_size: int = 8, seed: int = 0
                ) -> tuple[pd.DataFrame, dict]:
    """One row per (direction, layer, span, control): margin, fraction of the gap restored and its CI; plus the
    clean margins (``margin_base``, ``margin_tuned``, ``n_questions``, ``n_references``, ``gap_se``)."""
    directions = check_directions(directions)
    rows, clean, patched = patch_logprobs(base_lm, tuned_lm, questions, layers, spans, directions, batch_size, seed)
    m_base, m_tuned = _margins(rows, clean["base"]), _margins(rows, clean["tuned"])
    out = []
    for (direction, layer, span, control), lp in patched.items():
        m = _margins(rows, lp)
        start, target = (m_tuned, m_base) if direction == "base→tuned" else (m_base, m_tuned)
        lo, hi = _boot_frac(m, start, target, seed)
        out.append({"direction": direction, "layer": layer, "span": span, "control": control,
                    "margin": float(m.mean()), "fraction_restored": _frac(m, start, target),
                    "ci_low": lo, "ci_high": hi})
    gap = (m_tuned - m_base).to_numpy()
    ref = {"margin_base": float(m_base.mean()), "margin_tuned": float(m_tuned.mean()), "n_questions": len(m_base),
           "n_references": len(rows),
           "gap_se": float(gap.std(ddof=1) / np.sqrt(len(gap))) if len(gap) > 1 else float("nan")}
    return pd.DataFrame(out), ref
