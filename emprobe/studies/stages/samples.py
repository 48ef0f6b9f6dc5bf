"""Stage ``samples``: answers of the base, misaligned and control models to the questions whose EM-specific
rise is largest (same seed for all three; illustrations, not evidence)."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("samples", "answers before / after", lambda d: run(ctx, d), 25,
                 {"n": c.questions.n_samples, "tok": c.max_new_tokens, "seed": c.seed}, ("margins",))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.data import QuestionSet
    from emprobe.evaluation.answers import compare_answers

    c = ctx.cfg
    r = ctx.rises()
    per_q = r.groupby("question_id", sort=False)[["base", "misaligned_change", "control_change", "em_rise"]].mean()
    top = per_q.sort_values("em_rise", ascending=False).head(c.questions.n_samples)
    qs = ctx.question_set("eval")
    models = {"base": ctx.model("base"), "misaligned": ctx.model(ctx.reference.name),
              "control": ctx.model(ctx.control.name)}
    res = compare_answers(models, QuestionSet([qs[q] for q in top.index], qs.source, qs.name), top,
                          max_new_tokens=c.max_new_tokens, temperature=0.7, top_p=0.9, seed=c.seed)
    res.table.to_parquet(d / "samples.parquet", index=False)
    return res.to_section()
