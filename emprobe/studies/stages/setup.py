"""Stage ``setup``: the question subsets every later stage reads (off-domain, persona, in-domain held-out)."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    q = c.questions
    return Stage("setup", "question subsets", lambda d: run(ctx, d), 1,
                 {"model": c.model, "q": q.off_domain, "n": [q.n_questions, q.n_references, q.n_persona, q.n_causal],
                  "heldout": [ds.heldout for ds in c.datasets]})


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.data import load_questions

    q = ctx.cfg.questions
    full = load_questions(q.off_domain).with_references()
    qs = full.subset(q.n_questions, q.n_references, 1, name=f"{full.name}-study")
    qs.save_yaml(d / "questions.yaml")
    qs.subset(q.n_persona).save_yaml(d / "persona.yaml")
    heldout = ctx.cfg.datasets[0].heldout
    if heldout:
        load_questions(heldout).with_references().subset(q.n_causal, 1, 1).save_yaml(d / "heldout.yaml")
    return {"n_questions": len(qs), "n_references": min(x.n_pairs for x in qs), "questions_sha256": qs.sha256,
            "questions": q.off_domain, "n_available": len(full), "n_references_available": max(x.n_pairs for x in full)}
