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

#: public name -> the module that defines it; imported on first use, so reading results made elsewhere
#: (:mod:`emprobe.evaluation.external`) or a score table needs neither torch nor transformers
_NAMES = {
    "aggregate": ("EMThresholds", "aggregate_score", "em_flags", "em_summary", "overall_em_rate", "parse_score_token",
                  "wilson_interval"),
    "scoring": ("evaluate", "scorer"), "judge_eval": ("judge_scores", "judged_table"),
    "judges": ("DEFAULT_PROMPTS", "Judge", "JudgeCache", "JudgeError", "JudgePrompts", "LocalHFJudge", "OpenAIJudge",
               "judge_samples", "make_judge"),
    "margin": ("margin_scores", "margin_summary", "reference_logprobs", "sequence_logprobs"),
    "sampling": ("SamplingConfig", "sample_answers"), "tables": ("ScoreTable",),
    "sweep": ("sweep_run", "CheckpointScores"),
}
_WHERE = {name: module for module, names in _NAMES.items() for name in names}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'emprobe.evaluation' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"emprobe.evaluation.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


__all__ = [
    "DEFAULT_PROMPTS", "CheckpointScores", "EMThresholds", "Judge", "JudgeCache", "JudgeError", "JudgePrompts",
    "LocalHFJudge", "OpenAIJudge", "SamplingConfig", "ScoreTable", "aggregate_score", "em_flags", "em_summary",
    "evaluate", "judge_samples", "judge_scores", "judged_table", "make_judge", "margin_scores", "margin_summary",
    "overall_em_rate", "parse_score_token", "reference_logprobs", "sample_answers", "scorer", "sequence_logprobs",
    "sweep_run", "wilson_interval",
]
