"""``evaluate``: score one model (optionally with an adapter) or every checkpoint of a run.

This is the function behind ``emprobe eval``; every CLI option is one of its arguments.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

from emprobe.errors import ConfigError
from emprobe.evaluation.aggregate import EMThresholds
from emprobe.evaluation.judges.base import Judge, JudgePrompts
from emprobe.evaluation.sampling import SamplingConfig
from emprobe.evaluation.tables import ScoreTable

METRICS = ("margin", "judge")


def scorer(metric: str, questions, *, batch_size: int = 8, all_paraphrases: bool = False,
           judge: Judge | None = None, sampling: SamplingConfig | None = None,
           judge_prompts: JudgePrompts | None = None, thresholds: EMThresholds = EMThresholds()
           ) -> Callable[..., ScoreTable]:
    """``score(lm, **manifest_fields) -> ScoreTable`` for ``metric`` (``margin`` or ``judge``)."""
    if metric == "margin":
        from emprobe.evaluation.margin import margin_scores

        return lambda lm, **f: margin_scores(lm, questions, all_paraphrases, batch_size, **f)
    if metric == "judge":
        if judge is None:
            raise ConfigError("`metric` judge needs a `judge` (an HTTP judge: a judge model name and URL, or a local HF judge)")
        from emprobe.evaluation.judge_eval import judge_scores

        return partial(_judge, judge_scores, questions, judge, sampling, judge_prompts, thresholds)
    raise ConfigError(f"unknown `metric` {metric!r}; choose one of {', '.join(METRICS)}")


def _judge(fn, questions, judge, sampling, prompts, thresholds, lm, **fields) -> ScoreTable:
    return fn(lm, questions, judge, sampling, prompts, thresholds, **fields)


def evaluate(
    model: Any = None,
    questions: Any = "builtin:em-core",
    *,
    metric: str = "margin",
    adapter: str | Path | None = None,
    run: str | Path | None = None,
    out: str | Path | None = None,
    steps: list[int] | None = None,
    overwrite: bool = False,
    batch_size: int = 8,
    all_paraphrases: bool = False,
    judge: Judge | None = None,
    sampling: SamplingConfig | None = None,
    judge_prompts: JudgePrompts | None = None,
    thresholds: EMThresholds = EMThresholds(),
    device: str | None = None,
    dtype: str | None = None,
    threads: int | None = None,
    merge_adapters: bool = False,
    log: Callable[[str], Any] | None = print,
):
    """Score a model (``ScoreTable``) or, with ``run``, every checkpoint of a run (:class:`~emprobe.evaluation.sweep.CheckpointScores`).

    ``model``: a loaded model, an alias, hub id or directory (default: the packaged SmolLM2). ``questions``: ``builtin:NAME``, a Betley YAML path or a loaded :class:`~emprobe.data.QuestionSet`.
    ``metric="margin"`` needs questions with reference answers; ``metric="judge"`` samples answers
    (``sampling``) and scores them with ``judge``. With ``out`` the tables are written there
    (a score-table directory, or one per checkpoint for a run); existing results are kept unless ``overwrite``.
    ``merge_adapters`` merges each LoRA checkpoint into the weights while it is scored (faster; exact restore).
    """
    from emprobe.validate import check_evaluate

    check_evaluate(model=model, questions=questions, adapter=adapter, run=run, steps=steps, batch_size=batch_size,
                   out=out, overwrite=overwrite)
    import torch

    from emprobe.data import QuestionSet, load_questions

    if threads:
        torch.set_num_threads(threads)
    qs = questions if isinstance(questions, QuestionSet) else load_questions(questions)
    if metric == "margin":
        qs.with_references()  # a one-line error when no question has references
    score = scorer(metric, qs, batch_size=batch_size, all_paraphrases=all_paraphrases, judge=judge,
                   sampling=sampling, judge_prompts=judge_prompts, thresholds=thresholds)
    if run is not None:
        return _evaluate_run(run, model, score, ScoreTable.reusable, metric, qs, out=out, steps=steps,
                             overwrite=overwrite, log=log, device=device, dtype=dtype, merge=merge_adapters)
    if out is not None and not overwrite and ScoreTable.reusable(out, metric, qs):
        if log:
            log(f"{out} already holds scores; reusing them (overwrite to redo)")
        return ScoreTable.load(out)
    from emprobe.models import DEFAULT_MODEL, load_model

    lm = load_model(model or DEFAULT_MODEL, adapter=adapter, device=device, dtype=dtype)
    table = score(lm)
    if out is not None:
        table.save(out, overwrite=overwrite)
    return table


def _evaluate_run(run, model, score, reusable, metric, qs, *, merge: bool, **kw):
    """Every checkpoint of ``run`` scored with the base loaded once (``merge``: adapters merged while scored)."""
    from emprobe.evaluation.sweep import sweep_run
    from emprobe.finetuning.run import Run

    r = Run.load(run)
    base = r.model_spec.get("name")
    name = getattr(getattr(model, "spec", None), "name", model)
    if name is not None and name != base:
        raise ConfigError(f"`model` {name!r} differs from the run's base model {base!r}; leave `model` out")
    return sweep_run(r, score, reuse=lambda d: reusable(d, metric, qs), **kw, **({"merge": True} if merge else {}))
