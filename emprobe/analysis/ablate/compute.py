"""Directional ablation as a difference-in-differences: project the direction out of the residual stream at every
layer (``h ← h − (h·r̂) r̂``) of the fine-tuned model *and* of the reference model (the base model, or the
aligned-data control), and measure how much of the fine-tune's margin gap over the reference it removes.

Per question: ``gap = tuned − reference`` (both unablated), ``DiD = gap − gap_ablated``; the effect is the mean
DiD with a t-interval over questions. An ablation that only removes the base model's own discrimination moves
both models alike and leaves DiD near 0. Controls: ≥ 19 variance-matched directions (covariance draws and
shuffled-label mean differences from the activations the direction was fit on; see
:mod:`emprobe.analysis.causal`) ablated the same way in both models; the verdict
(:mod:`emprobe.analysis.causal_effect`) needs the DiD, its excess over the controls and its rank among them.
The SESOI is ``min_fraction`` of the gap; with no gap established (t-interval touching 0) the verdict is
inconclusive. Layer ``l`` = residual stream after decoder block ``l``. Samples (temperature 0.7, top-p 0.9) of
the fine-tuned model with and without the ablation are kept.
"""

from __future__ import annotations

import pandas as pd

from emprobe.analysis.ablate.result import AblateResult
from emprobe.analysis.causal import (
    causal_questions,
    check_provenance,
    control_directions,
    control_store,
    load_pair,
    load_tuned,
    margins_under,
    require_controls,
    sample_under,
)
from emprobe.errors import ConfigError


def _score(models: dict, variants: list, questions, batch_size: int) -> pd.DataFrame:
    """Per-question margins of each model under each variant's edits (one row per kind, seed, model, question)."""
    rows = []
    for kind, i, edits in variants:
        for name, lm in models.items():
            per_q = margins_under(lm, questions, edits, batch_size)
            rows += [{"kind": kind, "seed": i, "model": name, "question_id": str(q), "margin": float(m)}
                     for q, m in per_q.items()]
    return pd.DataFrame(rows)


def ablate(base, tuned, direction, questions="builtin:em-core", *, reference=None, activations=None,
           heldout="builtin:risky-finance-heldout", n_random: int = 10, n_shuffled: int = 10,
           min_fraction: float = 0.25, allow_overlap: bool = False, n_questions: int | None = 12,
           n_samples: int = 3, max_new_tokens: int = 48, batch_size: int = 8, seed: int = 0) -> AblateResult:
    """Ablate ``direction`` at every layer of ``tuned`` and of the reference; the difference-in-differences against
    variance-matched control directions (see the module docstring).

    ``base``: the model before fine-tuning (loaded, alias, hub id or directory). ``tuned``: a loaded model, a
    full-model directory, or a LoRA adapter directory (loaded on top of ``base``), e.g.
    ``ablate("smollm2-135m-instruct", "runs/x/checkpoints/step-000020", "directions/mean_diff")``. ``reference``:
    what the fine-tune is compared with — ``None`` = the base model, or the aligned-data control (same forms as
    ``tuned``). ``direction``: fit on questions other than ``questions`` (refused otherwise, unless
    ``allow_overlap``; the verdict is then inconclusive). ``activations``: the labelled store the controls are drawn
    from (default: the direction's recorded store). ``questions`` (off-domain) and ``heldout`` (in-domain, the
    fine-tuned model's cost; ``None`` = skip) are question sets with references (the first ``n_questions``;
    ``None`` = all). ``min_fraction``: the SESOI as a share of the gap, declared before looking.
    ``n_samples`` answers are sampled with and without the ablation.
    """
    from emprobe.probes import Direction

    require_controls(n_random, n_shuffled, "ablation")
    if not 0 < min_fraction <= 1:
        raise ConfigError(f"min_fraction must be in (0, 1], got {min_fraction}")
    base_lm, tuned_lm, meta = load_pair(base, tuned)
    ref_lm = base_lm if reference is None else load_tuned(base_lm, reference)
    d = Direction.load(direction)
    off = causal_questions(questions, n_questions)
    provenance = check_provenance(d, off, allow_overlap=allow_overlap)
    n_layers = tuned_lm.n_layers
    controls = control_directions(control_store(activations, d), d, d.layers, exclude=[q.id for q in off],
                                  n_random=n_random, n_shuffled=n_shuffled, seed=seed)
    variants = [("none", 0, None), ("direction", 0, d.ablation_edits(n_layers))]
    variants += [(kind, i, c.ablation_edits(n_layers)) for kind, i, c in controls]
    table = _score({"tuned": tuned_lm, "reference": ref_lm}, variants, off, batch_size)
    ind = causal_questions(heldout, n_questions) if heldout is not None else None
    in_domain = _score({"tuned": tuned_lm}, variants[:2], ind, batch_size) if ind is not None else pd.DataFrame()
    samples = pd.DataFrame([{**s, "ablated": edits is not None} for edits in (None, variants[1][2])
                            for s in sample_under(tuned_lm, off, edits, n_samples, max_new_tokens, seed=seed)]
                           ) if n_samples else pd.DataFrame()
    meta = {**meta, "reference": "base" if reference is None else (ref_lm.spec.adapter or ref_lm.spec.name),
            "direction": str(d.path) if d.path else d.method, "questions": off.name,
            "heldout": ind.name if ind is not None else None, "provenance": provenance}
    return AblateResult(table, d.method, float(min_fraction), in_domain, samples, meta)
