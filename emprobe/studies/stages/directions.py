"""Stage ``directions``: base-model misalignment directions — mean-diff (misaligned vs aligned reference answers,
``response_mean``) and persona (misaligned vs aligned persona system prompts, ``last_prompt``) — at every layer,
each scored by grouped cross-validated AUROC against random directions
(:class:`~emprobe.probes.DirectionsResult`)."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import plot_section

SPECS = {"mean_diff": ("eval", "references", "response_mean"), "persona": ("persona", "personas", "last_prompt")}


def stage(ctx: StudyContext) -> Stage:
    return Stage("directions", "base-model directions (mean-diff, persona)", lambda d: run(ctx, d), 30,
                 {"model": ctx.cfg.model, "seed": ctx.cfg.seed}, ("setup",))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.probes import DirectionsResult, extract, fit_direction

    c = ctx.cfg
    fitted = {}
    for method, (which, contrast, pos) in SPECS.items():
        store = extract(ctx.model("base"), ctx.question_set(which), contrast=contrast, positions=[pos],
                        first_paraphrase=True, batch_size=c.eval_batch_size)
        fitted[method] = fit_direction(store, method=method, position=pos, n_splits=5, n_random=20, seed=c.seed,
                                       out=d / method)
        fitted[method].cv_table().to_parquet(d / f"{method}_cv.parquet", index=False)
    return plot_section(ctx, DirectionsResult(fitted), d)
