"""Stages ``patch``, ``steer``, ``ablate``: causal checks on the questions whose margin rose most, scored with their
*next* reference pair (so selection noise does not carry into the measurement). Each section says first when its
control beats its effect or the effect has the wrong sign. Which layers and spans are patched and how many answers
are sampled are config fields (``patch_depths``, ``patch_spans``, ``causal_samples``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section


def _common(ctx: StudyContext) -> dict[str, Any]:
    c = ctx.cfg
    return {"seed": c.seed, "tok": c.max_new_tokens, "n": c.questions.n_samples, "samples": c.causal_samples}


def patch_stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("patch", "activation patching", lambda d: patch(ctx, d), 45,
                 {**_common(ctx), "depths": list(c.patch_depths), "spans": list(c.patch_spans)},
                 ("setup", "finetune", "margins"))


def steer_stage(ctx: StudyContext) -> Stage:
    return Stage("steer", "steering", lambda d: steer(ctx, d), 40,
                 {**_common(ctx), "alphas": list(ctx.cfg.steer_alphas)}, ("margins", "directions"))


def ablate_stage(ctx: StudyContext) -> Stage:
    return Stage("ablate", "directional ablation", lambda d: ablate(ctx, d), 40, _common(ctx),
                 ("setup", "finetune", "margins", "directions"))


def patch(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.patch import patch as patch_verb

    c = ctx.cfg
    base = ctx.model("base")
    res = patch_verb(base, ctx.model(ctx.reference.name), ctx.question_set("causal"),
                     layers=c.patch_layers(base.n_layers), spans=c.patch_spans, directions=("base→tuned",),
                     batch_size=c.eval_batch_size, seed=c.seed)
    return result_section(ctx, res, d)


def steer(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.steer import steer as steer_verb

    c = ctx.cfg
    # the raw mean-diff vector: alpha = 1 adds the whole misaligned-minus-aligned mean difference, a scale that
    # carries over between models (a unit vector at a fixed alpha is large for SmolLM2, tiny for Gemma)
    res = steer_verb(ctx.model("base"), ctx.direction("mean_diff"), ctx.question_set("causal"),
                     alphas=list(c.steer_alphas), unit=False, n_random=5, random_alphas=[max(c.steer_alphas)],
                     n_samples=c.causal_samples, max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size,
                     seed=c.seed)
    return result_section(ctx, res, d)


def ablate(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.ablate import ablate as ablate_verb

    c = ctx.cfg
    heldout = ctx.question_set("heldout") if ctx.path("setup", "heldout.yaml").is_file() else None
    res = ablate_verb(ctx.model("base"), ctx.model(ctx.reference.name), ctx.direction("mean_diff"),
                      ctx.question_set("causal"), heldout=heldout, n_random=5, random_in_domain=False,
                      n_samples=c.causal_samples, max_new_tokens=c.max_new_tokens, batch_size=c.eval_batch_size,
                      seed=c.seed)
    return result_section(ctx, res, d)
