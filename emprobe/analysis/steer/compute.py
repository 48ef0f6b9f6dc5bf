"""Steering: add ``α · direction`` to the residual stream at one layer (every position), sweep α, and compare
with random directions of the same norm (≥ 5, the control).

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``). Metric: the mean
judge-free margin (misaligned minus aligned reference log-prob; see :mod:`emprobe.analysis.causal`).
Samples (temperature 0.7, top-p 0.9) at α = 0 and the largest α are kept beside the scores.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from emprobe.analysis.causal import (
    causal_questions,
    mean_margin,
    random_like,
    require_controls,
    sample_under,
)
from emprobe.analysis.steer.result import SteerResult
from emprobe.errors import ConfigError
from emprobe.probes.interventions import add_vector


def _steer_table(lm, direction, layer: int, alphas: Sequence[float], questions, unit: bool, n_random: int,
                 batch_size: int, seed: int, random_alphas: Sequence[float]) -> pd.DataFrame:
    """Mean margin for each α with the direction and ``n_random`` random ones (at ``random_alphas``);
    α = 0 is the unedited model, scored once and shared by every row."""
    v = direction.vector(layer, unit=unit)
    vecs = [("direction", 0, v, alphas)] + [("random", i, r, random_alphas)
                                            for i, r in enumerate(random_like(v, n_random, seed))]
    clean, rows = None, []
    for kind, i, vec, alist in vecs:
        for a in alist:
            if a == 0:
                clean = mean_margin(lm, questions, None, batch_size)[0] if clean is None else clean
                m = clean
            else:
                m = mean_margin(lm, questions, {layer: add_vector(vec, a)}, batch_size)[0]
            rows.append({"kind": kind, "seed": i, "alpha": float(a), "layer": layer, "margin": m,
                         "vector_norm": float(vec.norm())})
    return pd.DataFrame(rows)


def steer(model, direction, questions="builtin:em-core", *, layer: int | None = None,
          alphas: Sequence[float] = (-8, -4, 0, 4, 8), unit: bool = True, n_random: int = 5,
          random_alphas: Sequence[float] | None = None, n_questions: int | None = 12, n_samples: int = 3,
          max_new_tokens: int = 48, batch_size: int = 8, seed: int = 0, adapter: str | None = None) -> SteerResult:
    """Sweep α for ``h ← h + α·v`` at ``layer`` (all positions) against random directions of the same norm.

    ``model``: a loaded model or a name/directory (``adapter=`` adds a LoRA to a name); ``direction``: a
    :class:`~emprobe.probes.Direction` or its directory; ``questions``: a question set with references (the
    first ``n_questions``; ``None`` = all). ``layer`` defaults to the direction's best layer; ``unit=False``
    adds the raw vector (α = 1 adds the whole mean difference). Random directions are scored at
    ``random_alphas`` (default: every α; it must include the largest α, where the band is read).
    ``n_samples`` answers are sampled at α = 0 and at the largest α.
    """
    from emprobe.models import load_model
    from emprobe.probes import Direction

    require_controls(n_random, "steering")
    alphas = sorted(float(a) for a in alphas)
    if len(alphas) < 2:
        raise ConfigError(f"steering needs at least two α values, got {alphas}")
    rand_alphas = alphas if random_alphas is None else sorted(float(a) for a in random_alphas)
    if alphas[-1] not in rand_alphas:
        raise ConfigError(f"random_alphas {rand_alphas} must include the largest α ({alphas[-1]:g})")
    lm, d = load_model(model, adapter=adapter), Direction.load(direction)
    qs = causal_questions(questions, n_questions)
    layer = d.best_layer if layer is None else int(layer)
    table = _steer_table(lm, d, layer, alphas, qs, unit, n_random, batch_size, seed, rand_alphas)
    samples = pd.DataFrame([{**s, "alpha": a} for a in (0.0, alphas[-1])
                            for s in sample_under(lm, qs, d.steer_edits(a, layer, unit) if a else None,
                                                  n_samples, max_new_tokens, seed=seed)]) if n_samples else pd.DataFrame()
    meta = {"model": lm.spec.name, "adapter": lm.spec.adapter,
            "direction": str(d.path) if d.path else d.method, "questions": qs.name}
    return SteerResult(table, layer, unit, d.method, n_random, samples, meta)
