"""Stage ``directions``: base-model misalignment directions — mean-diff (misaligned vs aligned reference answers,
``response_mean``) and persona (misaligned vs aligned persona system prompts, ``last_prompt``) — at every layer,
each scored by grouped cross-validated AUROC against random directions
(:class:`~emprobe.probes.DirectionsResult`).

Cross-fit: the mean-diff direction is fit on the questions *outside* the causal set the margins stage chose
(``margins/causal.yaml``), so steer and ablate never score a question whose reference answers the direction was
fit on. Its activations are kept (``mean_diff_acts/``): the causal checks draw their variance-matched control
directions from them."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import plot_section

SPECS = {"mean_diff": ("eval", "references", "response_mean"), "persona": ("persona", "personas", "last_prompt")}
ACTS = "mean_diff_acts"  # the mean-diff direction's activations (the causal checks' controls come from them)


def cross_fit(ctx: StudyContext) -> bool:
    """Whether the direction is fit outside the causal set: when steer or ablate score it (a study whose
    mitigations train with the study's directions fits them before fine-tuning, on every question)."""
    return "margins" in ctx.cfg.stages and any(s in ctx.cfg.stages for s in ("steer", "ablate"))


def stage(ctx: StudyContext) -> Stage:
    depends = ("setup", *(("margins",) if cross_fit(ctx) else ()))  # the causal set, when there is one
    return Stage("directions", "base-model directions (mean-diff, persona)", lambda d: run(ctx, d), 30,
                 {"model": ctx.cfg.model, "seed": ctx.cfg.seed, "cross_fit": cross_fit(ctx)}, depends)


def fit_questions(ctx: StudyContext):
    """The eval questions outside the causal set (all of them when the margins stage wrote none)."""
    from emprobe.data import QuestionSet

    qs = ctx.question_set("eval")
    if not cross_fit(ctx):
        return qs
    causal = set(ctx.question_set("causal").ids)
    return QuestionSet([q for q in qs if q.id not in causal], qs.source, f"{qs.name}-fit")


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.probes import DirectionsResult, extract, fit_direction

    c = ctx.cfg
    fitted = {}
    for method, (which, contrast, pos) in SPECS.items():
        qs = fit_questions(ctx) if method == "mean_diff" else ctx.question_set(which)
        store = extract(ctx.model("base"), qs, contrast=contrast, positions=[pos], first_paraphrase=True,
                        batch_size=c.eval_batch_size, out=d / ACTS if method == "mean_diff" else None)
        fitted[method] = fit_direction(store, method=method, position=pos, n_splits=5, n_random=20, seed=c.seed,
                                       out=d / method)
        fitted[method].cv_table().to_parquet(d / f"{method}_cv.parquet", index=False)
    return plot_section(ctx, DirectionsResult(fitted), d)
