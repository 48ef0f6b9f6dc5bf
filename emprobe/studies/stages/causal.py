"""Stages ``patch``, ``steer``, ``ablate``: causal checks on the questions whose margin rose most (``n_causal``,
at most half the questions), scored with their *next* reference pair (so selection noise does not carry into the
measurement), with a mean-diff direction fit on the *other* questions (cross-fit, see the directions stage).

- ``steer`` adds the direction to the base model; SESOI = ``causal_fraction`` (25 %) of the EM-specific rise
  (misaligned − aligned-control change) on the causal questions' scored pair, declared before looking; no
  established rise makes the verdict inconclusive.
- ``ablate`` projects the direction out of the misaligned run *and* its aligned-data control: the
  difference-in-differences of their gap, SESOI ``causal_fraction`` of that gap.
- ``patch`` cross-fits its (layer, span) cell on held-out halves, SESOI ``causal_fraction`` of the gap.

Steer and ablate compare with 20 variance-matched control directions (10 covariance draws, 10 shuffled-label
mean differences from the direction's own activations) and report the rank p. Each section says first when its
control beats its effect or the effect has the wrong sign. Patched layers and spans and sampled answers are
config fields (``patch_depths``, ``patch_spans``, ``causal_samples``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section
from emprobe.studies.stages.directions import ACTS

N_RANDOM = N_SHUFFLED = 10  # variance-matched controls of each kind (20 in all: a rank p can reach 1/21)


def _common(ctx: StudyContext) -> dict[str, Any]:
    c = ctx.cfg
    return {"seed": c.seed, "tok": c.max_new_tokens, "n": c.questions.n_samples, "samples": c.causal_samples,
            "fraction": c.causal_fraction, "controls": [N_RANDOM, N_SHUFFLED]}


def patch_stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("patch", "activation patching", lambda d: patch(ctx, d), 45,
                 {**_common(ctx), "depths": list(c.patch_depths), "spans": list(c.patch_spans)},
                 ("setup", "finetune", "margins"))


def steer_stage(ctx: StudyContext) -> Stage:
    return Stage("steer", "steering", lambda d: steer(ctx, d), 60,
                 {**_common(ctx), "alphas": list(ctx.cfg.steer_alphas)}, ("margins", "directions"))


def ablate_stage(ctx: StudyContext) -> Stage:
    return Stage("ablate", "directional ablation", lambda d: ablate(ctx, d), 90, _common(ctx),
                 ("setup", "finetune", "margins", "directions"))


def patch(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.patch import patch as patch_verb

    c = ctx.cfg
    base = ctx.model("base")
    res = patch_verb(base, ctx.model(ctx.reference.name), ctx.question_set("causal"), n_questions=None,
                     layers=c.patch_layers(base.n_layers), spans=c.patch_spans, directions=("base→tuned",),
                     min_fraction=c.causal_fraction, batch_size=c.eval_batch_size, seed=c.seed)
    return result_section(ctx, res, d)


def causal_rise(ctx: StudyContext):
    """The EM-specific rise (misaligned − aligned-control change, first dataset) on the causal questions, on the
    pair they are scored with (pair 1 where a question has two), as an :class:`Effect` over questions."""
    from emprobe.analysis.causal_effect import t_effect

    r = ctx.rises()
    ids = ctx.question_set("causal").ids
    r = r[r.question_id.astype(str).isin(ids)]
    scored = r.groupby("question_id").pair.transform(lambda p: 1 if p.max() >= 1 else 0)
    return t_effect(r[r.pair == scored].groupby("question_id").em_rise.mean().to_numpy())


def steer_sesoi(fraction: float, rise) -> tuple[float, str, str | None]:
    """``(sesoi, basis, cannot_test)``: ``fraction`` of the rise; with no rise established the SESOI is undefined
    (the verdict is inconclusive and the number shown is ``fraction`` of the rise's magnitude)."""
    basis = f"{fraction:.0%} of the EM-specific rise {rise.text()} nats/token on these questions"
    if rise.ci_low > 0:
        return fraction * rise.estimate, basis, None
    sesoi = max(fraction * abs(np.nan_to_num(rise.estimate)), np.finfo(float).tiny)  # steer needs one > 0
    return sesoi, basis, f"no EM-specific rise is established on the causal questions ({rise.text()}), so the SESOI " \
                         f"({fraction:.0%} of it) is undefined"


def steer(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.steer import steer as steer_verb

    c = ctx.cfg
    sesoi, basis, cannot_test = steer_sesoi(c.causal_fraction, causal_rise(ctx))
    # the raw mean-diff vector: alpha = 1 adds the whole misaligned-minus-aligned mean difference, a scale that
    # carries over between models (a unit vector at a fixed alpha is large for SmolLM2, tiny for Gemma)
    res = steer_verb(ctx.model("base"), ctx.direction("mean_diff"), ctx.question_set("causal"),
                     activations=ctx.path("directions", ACTS), alphas=list(c.steer_alphas), unit=False,
                     n_random=N_RANDOM, n_shuffled=N_SHUFFLED, sesoi=sesoi, n_questions=None,
                     n_samples=c.causal_samples, max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size,
                     seed=c.seed)
    res = replace(res, meta={**res.meta, "sesoi_basis": basis, "cannot_test": cannot_test})
    return result_section(ctx, res, d)


def ablate(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.ablate import ablate as ablate_verb

    c = ctx.cfg
    heldout = ctx.question_set("heldout") if ctx.path("setup", "heldout.yaml").is_file() else None
    res = ablate_verb(ctx.model("base"), ctx.model(ctx.reference.name), ctx.direction("mean_diff"),
                      ctx.question_set("causal"), reference=ctx.model(ctx.control.name),
                      activations=ctx.path("directions", ACTS), heldout=heldout, n_random=N_RANDOM,
                      n_shuffled=N_SHUFFLED, min_fraction=c.causal_fraction, n_questions=None,
                      n_samples=c.causal_samples, max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size,
                      seed=c.seed)
    res = replace(res, meta={**res.meta, "reference": "aligned-data control"})
    return result_section(ctx, res, d)
