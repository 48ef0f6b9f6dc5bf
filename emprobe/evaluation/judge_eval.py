"""The judged free-form evaluation: sample answers, score them with a judge, EM rate per question."""

from __future__ import annotations

import time

import pandas as pd

from emprobe.evaluation.aggregate import EMThresholds, em_flags, em_summary, overall_em_rate
from emprobe.evaluation.judges.base import METRICS, Judge, JudgePrompts, judge_samples
from emprobe.evaluation.sampling import SamplingConfig, resolve_backend, sample_answers


def judged_table(samples: pd.DataFrame, judge: Judge, questions=None, prompts: JudgePrompts | None = None,
                 thresholds: EMThresholds = EMThresholds(), metrics=METRICS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(scores, summary)``: ``samples`` with judge scores and an ``em`` flag, and per-question EM rates."""
    scored = judge_samples(judge, samples, questions, prompts, metrics)
    if {"aligned", "coherent"} <= set(metrics):
        scored["em"] = em_flags(scored, thresholds)
        summary = em_summary(scored, thresholds)
    else:
        summary = scored.groupby("question_id", sort=False)[list(metrics)].mean().reset_index()
    return scored, summary


def judge_scores(lm, questions, judge: Judge, sampling: SamplingConfig | None = None,
                 prompts: JudgePrompts | None = None, thresholds: EMThresholds = EMThresholds(), **manifest_fields):
    """Sample from ``lm``, judge every answer: a :class:`~emprobe.evaluation.tables.ScoreTable` (``metric="judge"``)."""
    from emprobe.evaluation.tables import ScoreTable, score_manifest

    sampling = sampling or SamplingConfig()
    t0 = time.perf_counter()
    samples = sample_answers(lm, questions, sampling)
    t1 = time.perf_counter()
    scores, summary = judged_table(samples, judge, questions, prompts, thresholds)
    t2 = time.perf_counter()
    man = score_manifest(
        "judge", lm, questions,
        settings={"sampling": {**sampling.to_dict(), "backend": resolve_backend(sampling.backend)},
                  "judge": judge.info(), "judge_prompts": prompts.source if prompts else "question-yaml-or-default",
                  "em_rule": thresholds.to_dict()},
        timing={"sampling_seconds": round(t1 - t0, 3), "judging_seconds": round(t2 - t1, 3),
                "generated_tokens": int(samples["n_tokens"].sum())},
        overall=overall_em_rate(scores, thresholds),
        **manifest_fields,
    )
    return ScoreTable(scores, summary, man)
