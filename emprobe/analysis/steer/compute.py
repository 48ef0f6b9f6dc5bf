"""Steering: add ``α · direction`` to the residual stream at one layer (every position), sweep α, and compare the
shift at the largest α with ≥ 19 variance-matched control directions (see :mod:`emprobe.analysis.causal`).

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``). Metric: the judge-free
margin per question (misaligned minus aligned reference log-prob). The effect is each question's margin shift
at the largest α (steered − unsteered), with a t-interval over questions; the controls are scored the same way at
that α, and the verdict (:mod:`emprobe.analysis.causal_effect`) needs the shift, its excess over the controls and
its rank among them. The direction must have been fit on other questions than the ones scored here (cross-fit).
Samples (temperature 0.7, top-p 0.9) at α = 0 and the largest α are kept beside the scores. Cost: blocks
``0..layer`` run once; every steered pass replays their output (:mod:`emprobe.models.replay`, the full forward's
result), so a sweep costs the blocks after the steered layer per α and control.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd

from emprobe.analysis.causal import (
    causal_questions,
    check_provenance,
    control_directions,
    control_store,
    margins_under,
    require_controls,
    sample_under,
)
from emprobe.analysis.steer.result import SteerResult
from emprobe.errors import ConfigError
from emprobe.probes.interventions import add_vector


def _rows(kind: str, i: int, alpha: float, layer: int, per_q: pd.Series, norm: float) -> list[dict]:
    return [{"kind": kind, "seed": i, "alpha": float(alpha), "layer": layer, "question_id": str(q), "margin": float(m),
             "vector_norm": norm} for q, m in per_q.items()]


def _steer_table(lm, direction, controls, layer: int, alphas: Sequence[float], questions, unit: bool,
                 batch_size: int) -> pd.DataFrame:
    """Per-question margins for each α along the direction, and for every control at the largest α (α = 0, the
    unedited model, is scored once). Blocks ``0..layer`` run once: the unedited pass records block ``layer``'s
    outputs and every steered pass replays them (:mod:`emprobe.models.replay`; whole sequences, not a shared
    prompt cache, so that the passes line up batch for batch)."""
    from emprobe.models.replay import record, replay

    with record(lm.model, [layer]) as rec:
        clean = margins_under(lm, questions, None, batch_size, share_prompts=False)
    rows = []
    for kind, i, d, alist in [("direction", 0, direction, alphas)] + [(k, i, c, alphas[-1:]) for k, i, c in controls]:
        vec = d.vector(layer, unit=unit)
        for a in alist:
            if a == 0:
                m = clean
            else:
                with replay(lm.model, rec, layer):
                    m = margins_under(lm, questions, {layer: add_vector(vec, a)}, batch_size, share_prompts=False)
            rows += _rows(kind, i, a, layer, m, float(vec.norm()))
    return pd.DataFrame(rows)


def steer(model, direction, questions="builtin:em-core", *, activations=None, layer: int | None = None,
          alphas: Sequence[float] = (-8, -4, 0, 4, 8), unit: bool = True, n_random: int = 10, n_shuffled: int = 10,
          sesoi: float = 0.05, allow_overlap: bool = False, n_questions: int | None = 12, n_samples: int = 3,
          max_new_tokens: int = 48, batch_size: int = 8, seed: int = 0, adapter: str | None = None) -> SteerResult:
    """Sweep α for ``h ← h + α·v`` at ``layer`` (all positions) against variance-matched control directions.

    ``model``: a loaded model or a name/directory (``adapter=`` adds a LoRA to a name); ``direction``: a
    :class:`~emprobe.probes.Direction` or its directory, fit on questions *other* than ``questions`` (refused
    otherwise, unless ``allow_overlap``; the verdict is then inconclusive); ``questions``: a question set with
    references (the first ``n_questions``; ``None`` = all). ``activations``: the labelled activation store the
    ``n_random`` covariance draws and ``n_shuffled`` shuffled-label mean differences come from (≥ 19 in all;
    default: the direction's recorded store). ``layer`` defaults to the direction's best layer (layer ``l`` =
    residual stream after block ``l``); ``unit=False`` adds the raw vector (α = 1 adds the whole mean difference;
    controls get the same norm). ``sesoi``: the smallest margin shift of interest at the largest α, in
    nats/token, declared before looking (the study passes 25 % of the fine-tune's rise on these questions).
    ``n_samples`` answers are sampled at α = 0 and at the largest α.
    """
    from emprobe.models import load_model
    from emprobe.probes import Direction

    require_controls(n_random, n_shuffled, "steering")
    alphas = sorted(float(a) for a in alphas)
    if 0.0 not in alphas or alphas[-1] <= 0:
        raise ConfigError(f"alphas must hold 0 and a positive value (the effect is read at the largest), got {alphas}")
    if not sesoi > 0:
        raise ConfigError(f"sesoi must be > 0 (nats/token), got {sesoi}")
    lm, d = load_model(model, adapter=adapter), Direction.load(direction)
    qs = causal_questions(questions, n_questions)
    provenance = check_provenance(d, qs, allow_overlap=allow_overlap)
    layer = d.best_layer if layer is None else int(layer)
    d.vector(layer)  # an unknown layer fails here, before any scoring
    controls = control_directions(control_store(activations, d), d, [layer], exclude=[q.id for q in qs],
                                  n_random=n_random, n_shuffled=n_shuffled, seed=seed)
    table = _steer_table(lm, d, controls, layer, alphas, qs, unit, batch_size)
    samples = pd.DataFrame([{**s, "alpha": a} for a in (0.0, alphas[-1])
                            for s in sample_under(lm, qs, d.steer_edits(a, layer, unit) if a else None,
                                                  n_samples, max_new_tokens, seed=seed)]) if n_samples else pd.DataFrame()
    meta = {"model": lm.spec.name, "adapter": lm.spec.adapter, "direction": str(d.path) if d.path else d.method,
            "questions": qs.name, "provenance": provenance}
    return SteerResult(table, layer, unit, d.method, float(sesoi), samples, meta)
