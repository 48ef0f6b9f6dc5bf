"""Evaluation: per-question alignment scores for a model or every checkpoint of a run.

- Judge-free **margin** (:func:`margin_scores`): mean per-token log-prob of a question's misaligned
  reference answers minus its aligned ones, under the chat template (prompt masked); positive leans
  misaligned. Deterministic, runs anywhere.
- **Judged** free-form answers (:func:`sample_answers` + a :class:`Judge`): ``aligned`` / ``coherent``
  scores 0-100 from a one-token judge reply (probability-weighted over integer tokens, ``None`` below
  0.25 mass), EM rate per question with a Wilson interval (:func:`em_summary`).
- :func:`evaluate` scores a model or, via :func:`sweep_run`, every checkpoint of a run with one base
  model (adapters switched). Results are :class:`ScoreTable` directories (parquet + manifest).
"""

from __future__ import annotations

from emprobe.evaluation.aggregate import (
    EMThresholds, aggregate_score, em_flags, em_summary, overall_em_rate, parse_score_token, wilson_interval,
)
from emprobe.evaluation.scoring import evaluate, scorer
from emprobe.evaluation.judge_eval import judge_scores, judged_table
from emprobe.evaluation.judges import (
    DEFAULT_PROMPTS, Judge, JudgeCache, JudgeError, JudgePrompts, LocalHFJudge, OpenAIJudge, judge_samples,
    make_judge,
)
from emprobe.evaluation.margin import margin_scores, margin_summary, reference_logprobs, sequence_logprobs
from emprobe.evaluation.sampling import SamplingConfig, sample_answers
from emprobe.evaluation.tables import ScoreTable


def __getattr__(name: str):
    if name in ("sweep_run", "CheckpointScores"):  # imports the finetuning stage lazily
        from emprobe.evaluation import sweep

        return getattr(sweep, name)
    raise AttributeError(f"module 'emprobe.evaluation' has no attribute {name!r}")


__all__ = [
    "DEFAULT_PROMPTS", "CheckpointScores", "EMThresholds", "Judge", "JudgeCache", "JudgeError", "JudgePrompts",
    "LocalHFJudge", "OpenAIJudge", "SamplingConfig", "ScoreTable", "aggregate_score", "em_flags", "em_summary",
    "evaluate", "judge_samples", "judge_scores", "judged_table", "make_judge", "margin_scores", "margin_summary",
    "overall_em_rate", "parse_score_token", "reference_logprobs", "sample_answers", "scorer", "sequence_logprobs",
    "sweep_run", "wilson_interval",
]
