"""The one checkpoint-margin loop: the judge-free margin of every question (per reference pair) at the checkpoints
of a set of runs, each distinct model scored once.

- step 0 of every run is the untouched base model (a LoRA adapter starts with ``B = 0``; a full fine-tune's step 0
  holds the base weights): scored once per base model and question set, shared by every run;
- any other checkpoint whose weights equal one scored before (:meth:`~emprobe.finetuning.run.Checkpoint.digest`,
  e.g. warmup-stable-decay and constant runs before the decay starts) is scored once too;
- ``trend_pairs`` scores the intermediate checkpoints on the first ``trend_pairs`` reference pairs only (a
  loss-vs-alignment curve needs the trend, not the spread); step 0 and the last step always get every pair;
- control runs are scored at step 0 and their last step only;
- ``cache`` keeps each score table under ``RUN/eval/<questions>-margin/step-XXXXXX/`` and reuses it on the next
  call (:class:`~emprobe.evaluation.ScoreTable` directories).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

PAIR_COLUMNS = ["run", "step", "question_id", "category", "pair", "margin"]


def base_key(run, questions) -> str:
    """Cache key of a run's step-0 scores: the base model spec (adapter cleared) + the question set's hash."""
    from emprobe.io import content_hash

    return content_hash({"model": {**run.model_spec, "adapter": None}, "questions": questions.sha256})


def _cache_dir(run, questions, step: int) -> Path:
    from emprobe.finetuning.run import checkpoint_name

    return run.path / "eval" / f"{questions.name}-margin" / checkpoint_name(step)


def _keep_copy(run, table, questions, step: int) -> None:
    """Save ``table`` (scored on another run's identical checkpoint) into ``run``'s cache, with its own manifest."""
    from emprobe.evaluation import ScoreTable

    target = _cache_dir(run, questions, step)
    if ScoreTable.reusable(target, "margin", questions):
        return
    ckpt = run.checkpoint(step)
    man = {**table.manifest, "run": str(run.path), "checkpoint": str(ckpt.path), "train_loss": ckpt.train_loss,
           "val_loss": ckpt.val_loss, "reused_from": table.manifest.get("checkpoint"),
           "adapter": str(ckpt.path) if ckpt.kind == "lora" else None}
    ScoreTable(table.scores, table.summary, man).save(target, overwrite=True)


class _Scorer:
    """Scores checkpoints, remembering every distinct model scored (see the module docstring)."""

    def __init__(self, questions, trend, batch_size: int, merge: bool, cache: bool, log):
        self.qs, self.trend, self.bs, self.merge, self.cache = questions, trend, batch_size, merge, cache
        self.log = log or (lambda _m: None)
        self.scored: dict[Any, Any] = {}
        self.counts = {"scored": 0, "reused": 0}

    def which(self, step: int, last: int):
        return self.qs if step in (0, last) else self.trend

    def run(self, run, steps: list[int]) -> dict[int, Any]:
        """``{step: ScoreTable}`` of ``run`` at ``steps``."""
        from emprobe.evaluation import ScoreTable, margin_scores

        last = max(c.step for c in run.checkpoints())
        keys = {s: ("base", base_key(run, self.qs)) if s == 0 else
                (run.checkpoint(s).digest(), self.which(s, last) is self.qs) for s in steps}
        tables, same, todo = {}, [], []
        for s in steps:
            q = self.which(s, last)
            if keys[s] in self.scored:
                tables[s] = self.scored[keys[s]]
                same.append(s)
                if self.cache:
                    _keep_copy(run, tables[s], q, s)
            elif self.cache and ScoreTable.reusable(_cache_dir(run, q, s), "margin", q):
                tables[s] = self.scored[keys[s]] = ScoreTable.load(_cache_dir(run, q, s))
            else:
                todo.append(s)
        for ck, lm in run.iter_models(steps=todo, merge=self.merge, log=None) if todo else ():
            q = self.which(ck.step, last)
            tables[ck.step] = self.scored[keys[ck.step]] = margin_scores(
                lm, q, batch_size=self.bs, run=str(run.path), step=ck.step, checkpoint=str(ck.path),
                train_loss=ck.train_loss, val_loss=ck.val_loss)
            if self.cache:
                tables[ck.step].save(_cache_dir(run, q, ck.step), overwrite=True)
        self.counts["scored"] += len(todo)
        self.counts["reused"] += len(same)
        self.log(f"  scored {run.name}: steps {todo}" + (f" (steps {same}: equal to checkpoints scored before)"
                                                          if same else ""))
        return tables


def score_runs(runs: list, controls: list, questions, *, steps: list[int] | None = None,
               trend_pairs: int | None = None, batch_size: int = 8, merge: bool = False, cache: bool = False,
               log: Callable[[str], Any] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """``(pairs, margins, counts)`` of ``runs`` then ``controls`` (see the module docstring): ``pairs`` one row per
    (run, step, question, reference pair), ``margins`` one per (run, step, question) with the run's settings and
    the checkpoint's losses, ``counts`` ``{"scored": ..., "reused": ...}``."""
    from emprobe.evaluation.margin import pair_margins

    trend = questions.subset(n_references=trend_pairs) if trend_pairs else questions
    scorer = _Scorer(questions, trend, batch_size, merge, cache, log)
    pairs, rows = [], []
    names = {r.name for r in runs}
    controls = [c for c in controls if c.name not in names]
    for run in [*runs, *controls]:
        have = [c.step for c in run.checkpoints()]
        if run.name not in names:
            wanted = sorted({s for s in (0, max(have)) if s in have})
        else:
            wanted = [s for s in have if steps is None or s in steps]
        tables = scorer.run(run, wanted)
        for s in wanted:
            pairs.append(pair_margins(tables[s].scores).assign(run=run.name, step=s))
            rows += _margin_rows(run, s, tables[s].summary)
    return pd.concat(pairs, ignore_index=True)[PAIR_COLUMNS], pd.DataFrame(rows), scorer.counts


def _margin_rows(run, step: int, summary: pd.DataFrame) -> list[dict[str, Any]]:
    settings, ck = run.settings, run.checkpoint(step)
    info = {"run": run.name, "schedule": str(settings.get("schedule", "?")), "lr": settings.get("lr"),
            "data": str(run.manifest.get("data", {}).get("source", settings.get("data", "?"))), "step": step,
            "train_loss": ck.train_loss, "val_loss": ck.val_loss}
    return [{**info, "question_id": str(q), "margin": float(m)} for q, m in zip(summary.question_id, summary.margin)]
