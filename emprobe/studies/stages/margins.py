"""Stage ``margins``: the judge-free margin of every off-domain question, per reference pair, at every checkpoint
(:func:`emprobe.analysis.margins.margins`), and the EM-specific rise of each dataset's reference run over its
aligned-data control.

What is scored is :func:`emprobe.studies.plan.margin_plan` (the rule ``ep.margins`` scores by): the base model once
(every run's step 0), every run's final checkpoint on all pairs, the misaligned runs' intermediate checkpoints on
the first pair only (the loss-vs-alignment curve needs the trend, not the spread), each checkpoint with equal
weights once; every LoRA checkpoint of every run in mixed-adapter batches on the one loaded base model.
Writes ``pairs.parquet``, ``rises.parquet`` (with a ``dataset`` column) and ``causal.yaml`` (the causal checks'
questions).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from emprobe.studies.cells import control_cell, reference_cell
from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import plot_section


def stage(ctx: StudyContext) -> Stage:
    from emprobe.studies.plan import expected_duplicates, margin_plan

    q, jobs = ctx.cfg.questions, margin_plan(ctx.cfg)
    n_q = q.n_questions or 100
    n_seq = 2 * n_q * sum(j.pairs or q.n_references for j in jobs if j not in expected_duplicates(ctx.cfg, jobs))
    return Stage("margins", "margins at every checkpoint", lambda d: run(ctx, d), 0.16 * n_seq,
                 {"bs": ctx.cfg.eval_batch_size, "model": ctx.cfg.model}, ("setup", "finetune"))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.margins import margins
    from emprobe.studies.plan import TREND_PAIRS

    c = ctx.cfg
    mains = [cell for cell in ctx.cells if not cell.control]
    refs = {ds.name: (reference_cell(c, ds.name).name, control_cell(c, ds.name).name) for ds in c.datasets}
    res = margins([ctx.run(cell) for cell in mains], ctx.question_set("eval"),
                  controls={ref: ctx.run(ctl) for ref, ctl in refs.values()}, trend_pairs=TREND_PAIRS,
                  batch_size=c.eval_batch_size, n_permutations=c.n_permutations, seed=c.seed, log=ctx.log)
    res.pairs.to_parquet(d / "pairs.parquet", index=False)
    dataset = {ref: ds for ds, (ref, _) in refs.items()}
    rises = res.rises.assign(run=res.rises.run.map(dataset)).rename(columns={"run": "dataset"})
    rises.to_parquet(d / "rises.parquet", index=False)
    causal = causal_set(ctx, rises[rises.dataset == c.datasets[0].name])
    causal.save_yaml(d / "causal.yaml")
    return plot_section(ctx, res, d, top_questions=res.top_questions(5), causal_questions=causal.ids)


def causal_set(ctx: StudyContext, r: pd.DataFrame):
    """The causal checks' questions: those whose margin rose most on pair 0, scored with pair 1 (their *next*
    pair), so the selection's noise does not carry into the measurement (pair 0 when only one exists)."""
    from emprobe.data import QuestionSet

    qs = ctx.question_set("eval")
    n = ctx.cfg.questions.causal_count(len(qs))  # the mean-diff direction is fit on the other questions
    top = r[r.pair == 0].sort_values("misaligned_change", ascending=False).question_id[:n]
    out = []
    for qid in top:
        q = qs[qid]
        k = 1 if q.n_pairs > 1 else 0
        out.append(replace(q, paraphrases=q.paraphrases[:1], aligned_references=q.aligned_references[k:k + 1],
                           misaligned_references=q.misaligned_references[k:k + 1]))
    return QuestionSet(out, qs.source, f"{qs.name}-causal")
