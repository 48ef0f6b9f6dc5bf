"""Directional ablation: project the direction out of the fine-tuned model's residual stream at every layer
(``h ← h − (h·r̂) r̂``) and measure how much of the fine-tune's off-domain margin rise it removes, what it
costs in-domain, and how much random directions (≥ 5, the control) remove ablated the same way.

Layer ``l`` = residual stream after decoder block ``l``. Metric: the mean judge-free margin (see
:mod:`emprobe.analysis.causal`). Samples (temperature 0.7, top-p 0.9) with and without the ablation are kept.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emprobe.analysis.ablate.result import AblateResult
from emprobe.analysis.causal import (
    causal_questions,
    load_pair,
    mean_margin,
    random_like,
    require_controls,
    sample_under,
)
from emprobe.probes.interventions import project_out


def ablate(base, tuned, direction, questions="builtin:em-core", *, heldout="builtin:risky-finance-heldout",
           n_random: int = 5, random_in_domain: bool = True, n_questions: int | None = 12, n_samples: int = 3,
           max_new_tokens: int = 48, batch_size: int = 8, seed: int = 0) -> AblateResult:
    """Project ``direction`` out at every layer of ``tuned``; off-domain gain vs in-domain cost vs random directions.

    ``base``: the model before fine-tuning (loaded, alias, hub id or directory). ``tuned``: a loaded model, a
    full-model directory, or a LoRA adapter directory (loaded on top of ``base``), e.g.
    ``ablate("smollm2-135m-instruct", "runs/x/checkpoints/step-000020", "directions/mean_diff")``.
    ``questions`` (off-domain) and ``heldout`` (in-domain; ``None`` = skip the in-domain cost) are question sets
    with references (the first ``n_questions`` of each; ``None`` = all). ``random_in_domain=False`` scores the random controls
    off-domain only. ``n_samples`` answers are sampled with and without the ablation.
    """
    from emprobe.probes import Direction

    require_controls(n_random, "ablation")
    base_lm, tuned_lm, meta = load_pair(base, tuned)
    d = Direction.load(direction)
    off = causal_questions(questions, n_questions)
    ind = causal_questions(heldout, n_questions) if heldout is not None else None
    n_layers = tuned_lm.n_layers
    variants = [("none", 0, None), ("direction", 0, d.ablation_edits(n_layers))]
    variants += [("random", i, {layer: project_out(r) for layer in range(n_layers)})
                 for i, r in enumerate(random_like(d.vector(), n_random, seed))]
    rows = []
    for kind, i, edits in variants:
        m_off = mean_margin(tuned_lm, off, edits, batch_size)[0]
        in_domain = ind is not None and (kind != "random" or random_in_domain)
        m_in = mean_margin(tuned_lm, ind, edits, batch_size)[0] if in_domain else np.nan
        rows.append({"kind": kind, "seed": i, "off_domain_margin": m_off, "in_domain_margin": m_in})
    samples = pd.DataFrame([{**s, "ablated": edits is not None} for edits in (None, variants[1][2])
                            for s in sample_under(tuned_lm, off, edits, n_samples, max_new_tokens, seed=seed)]
                           ) if n_samples else pd.DataFrame()
    meta = {**meta, "direction": str(d.path) if d.path else d.method, "questions": off.name,
            "heldout": ind.name if ind is not None else None}
    return AblateResult.build(pd.DataFrame(rows), mean_margin(base_lm, off, None, batch_size)[0], d.method, n_random,
                              random_in_domain=random_in_domain and ind is not None, samples=samples, meta=meta)

