"""The one checkpoint-margin loop: the judge-free margin of every question (per reference pair) at the checkpoints
of a set of runs, each distinct model scored once, the LoRA checkpoints of all runs in mixed-adapter batches.

What is scored (:func:`checkpoint_plan`; the study's cost model counts the same, :mod:`emprobe.studies.plan`):

- step 0 of every run is the untouched base model (a LoRA adapter starts with ``B = 0``; a full fine-tune's step 0
  holds the base weights): scored once per base model and question set, shared by every run;
- each run's last step on every reference pair; its intermediate checkpoints on the first ``trend_pairs`` pairs
  (a loss-vs-alignment curve needs the trend, not the spread; default every pair);
- control runs at step 0 and their last step only;
- any checkpoint whose weights equal one scored before (:meth:`~emprobe.finetuning.run.Checkpoint.digest`, e.g.
  warmup-stable-decay and constant runs before the decay starts) is scored once; where it is wanted on fewer
  pairs, its scores are those pairs of the all-pairs table.

How: with ``mixed`` (default) every LoRA checkpoint of every run on one base model, and the base model itself, are
stacked on that base, loaded once, and scored in mixed-adapter batches (:mod:`emprobe.evaluation.mixed`: rows
routed per adapter, prompts' KV caches shared). Checkpoints that cannot be stacked (full fine-tunes; DoRA or other
non-plain LoRA adapters), and every checkpoint without ``mixed``, are scored one at a time
(:meth:`~emprobe.finetuning.run.Run.iter_models`; ``merge`` merges each LoRA adapter into the weights while it is
scored). Both ways give the same margins to float rounding (< 1e-4).

``cache`` keeps each score table under ``RUN/eval/<questions>-margin/step-XXXXXX/`` and reuses it on the next call
(:class:`~emprobe.evaluation.ScoreTable` directories).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emprobe.errors import DataError

PAIR_COLUMNS = ["run", "step", "question_id", "category", "pair", "margin"]


def checkpoint_plan(have: list[int], *, control: bool = False, steps: list[int] | None = None,
                    trend_pairs: int | None = None) -> dict[int, int | None]:
    """``{step: reference pairs scored (None: every pair)}`` of one run with checkpoints at steps ``have``: step 0
    and the last step on every pair, the others (those in ``steps``; default all) on ``trend_pairs``; a control
    run at step 0 and its last step only."""
    last = max(have)
    if control:
        return {s: None for s in sorted({0, last}) if s in have}
    return {s: None if s in (0, last) else trend_pairs for s in have if steps is None or s in steps}


def model_key(run) -> str:
    """Which base model ``run`` fine-tuned (its model spec, adapter cleared)."""
    from emprobe.io import content_hash

    return content_hash({**run.model_spec, "adapter": None})


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


def _subset_table(table, questions, pairs: int):
    """The first ``pairs`` reference pairs of an all-pairs score table, as a table of ``questions`` (that subset)."""
    from emprobe.evaluation import ScoreTable
    from emprobe.evaluation.margin import margin_summary
    from emprobe.evaluation.tables import question_set_info

    refs = table.scores[table.scores.reference_index < pairs].reset_index(drop=True)
    summary = margin_summary(refs)
    overall = {**table.manifest.get("overall", {}), "mean_margin": float(summary.margin.mean()),
               "n_references": len(refs)}
    return ScoreTable(refs, summary, {**table.manifest, "questions": question_set_info(questions), "overall": overall})


def _fields(run, ck) -> dict[str, Any]:
    return {"run": str(run.path), "step": ck.step, "checkpoint": str(ck.path), "train_loss": ck.train_loss,
            "val_loss": ck.val_loss}


class _Scorer:
    """Scores the checkpoints ``[(run, step, pairs), ...]`` asks for (see the module docstring)."""

    def __init__(self, questions, trend, *, batch_size: int, merge: bool, cache: bool, mixed: bool, log):
        self.full, self.trend = questions, trend
        self.bs, self.merge, self.cache, self.mixed = batch_size, merge, cache, mixed
        self.log = log or (lambda _m: None)
        self.counts = {"scored": 0, "reused": 0}

    def qs(self, pairs: int | None):
        return self.full if pairs is None else self.trend

    def tables(self, needs: list[tuple[Any, int, int | None]]) -> dict[tuple[str, int], Any]:
        """``{(run name, step): ScoreTable}``: cached tables first, then each distinct model scored once."""
        from emprobe.evaluation import ScoreTable

        keys = {(r.name, s): ("base:" + model_key(r), None) if s == 0 else (r.checkpoint(s).digest(), p)
                for r, s, p in needs}
        found: dict[tuple, Any] = {}
        own = set()
        for r, s, p in needs:
            k, d = keys[(r.name, s)], _cache_dir(r, self.qs(p), s)
            if k not in found and self.cache and ScoreTable.reusable(d, "margin", self.qs(p)):
                found[k] = ScoreTable.load(d)
                own.add((r.name, s))
        todo: dict[tuple, tuple] = {}
        for r, s, p in needs:
            if keys[(r.name, s)] not in found:
                todo.setdefault(keys[(r.name, s)], (r, s, p))
        derived = [k for k in todo if k[1] is not None and ((k[0], None) in found or (k[0], None) in todo)]
        for k in derived:
            del todo[k]
        found.update(self.score(todo))
        for k in derived:
            found[k] = _subset_table(found[(k[0], None)], self.trend, k[1])
        first = {k: (r.name, s) for k, (r, s, _) in todo.items()}
        out = {}
        for r, s, p in needs:
            k = keys[(r.name, s)]
            out[(r.name, s)] = found[k]
            if self.cache and (r.name, s) not in own:
                if first.get(k) == (r.name, s):
                    found[k].save(_cache_dir(r, self.qs(p), s), overwrite=True)
                else:
                    _keep_copy(r, found[k], self.qs(p), s)
        self.counts["scored"] += len(todo)
        self.counts["reused"] += len(needs) - len(todo) - len(own)
        self.log(f"  {len(needs)} checkpoints: {len(todo)} scored now, {len(own)} read from the cache, "
                 f"{len(needs) - len(todo) - len(own)} equal to another (scored once)")
        return out

    def score(self, todo: dict[tuple, tuple]) -> dict[tuple, Any]:
        """Score each ``{key: (run, step, pairs)}``: stackable ones per base model in mixed-adapter batches, the
        rest one at a time per run."""
        from emprobe.evaluation.mixed import stack_key

        mixed: dict[str, list] = {}
        alone: dict[str, list] = {}
        for k, (r, s, p) in todo.items():
            ck = r.checkpoint(s)
            if self.mixed and (s == 0 or (ck.kind == "lora" and stack_key(ck.path) is not None)):
                mixed.setdefault(model_key(r), []).append((k, r, s, p))
            else:
                alone.setdefault(r.name, []).append((k, r, s, p))
        out: dict[tuple, Any] = {}
        for group in mixed.values():
            out.update(self._mixed(group))
        for group in alone.values():
            out.update(self._alone(group))
        if todo:
            n_mixed = sum(map(len, mixed.values()))
            self.log(f"  scored {len(todo)} models" + (f" ({n_mixed} in mixed-adapter batches)" if n_mixed else ""))
        return out

    def _mixed(self, group: list) -> dict[tuple, Any]:
        from emprobe.evaluation.mixed import adapter_margin_scores
        from emprobe.models import ModelSpec, load_model

        spec = ModelSpec.coerce(ModelSpec(**group[0][1].model_spec), adapter=None)
        spec.adapter = None
        lm = load_model(spec, log=None)
        adapters = [None if s == 0 else r.checkpoint(s).path for _, r, s, _ in group]
        tables = adapter_margin_scores(lm, adapters, [self.qs(p) for *_, p in group], batch_size=self.bs,
                                       fields=[_fields(r, r.checkpoint(s)) for _, r, s, _ in group])
        return {k: t for (k, *_), t in zip(group, tables)}

    def _alone(self, group: list) -> dict[tuple, Any]:
        from emprobe.evaluation import margin_scores

        run, by_step = group[0][1], {s: (k, p) for k, _, s, p in group}
        out = {}
        for ck, lm in run.iter_models(steps=sorted(by_step), merge=self.merge, log=None):
            k, p = by_step[ck.step]
            out[k] = margin_scores(lm, self.qs(p), batch_size=self.bs, **_fields(run, ck))
        return out


def score_runs(runs: list, controls: list, questions, *, steps: list[int] | None = None,
               trend_pairs: int | None = None, batch_size: int = 8, merge: bool = False, cache: bool = False,
               mixed: bool = True, log: Callable[[str], Any] | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """``(pairs, margins, counts)`` of ``runs`` then ``controls`` (see the module docstring): ``pairs`` one row per
    (run, step, question, reference pair), ``margins`` one per (run, step, question) with the run's settings and
    the checkpoint's losses, ``counts`` ``{"scored": distinct models scored now, "reused": checkpoints served by
    another's scores}``."""
    from emprobe.evaluation.margin import pair_margins

    trend = questions.subset(n_references=trend_pairs) if trend_pairs else questions
    names = {r.name for r in runs}
    needs = []
    for run in [*runs, *[c for c in controls if c.name not in names]]:
        have = [c.step for c in run.checkpoints()]
        if not have:
            raise DataError(f"{run.path}: run has no complete checkpoint")
        plan = checkpoint_plan(have, control=run.name not in names, steps=steps, trend_pairs=trend_pairs)
        needs += [(run, s, p) for s, p in plan.items()]
    scorer = _Scorer(questions, trend, batch_size=batch_size, merge=merge, cache=cache, mixed=mixed, log=log)
    tables = scorer.tables(needs)
    pairs, rows = [], []
    for run, s, _ in needs:
        t = tables[(run.name, s)]
        pairs.append(pair_margins(t.scores).assign(run=run.name, step=s))
        rows += _margin_rows(run, s, t.summary)
    return pd.concat(pairs, ignore_index=True)[PAIR_COLUMNS], pd.DataFrame(rows), scorer.counts


def _margin_rows(run, step: int, summary: pd.DataFrame) -> list[dict[str, Any]]:
    settings, ck = run.settings, run.checkpoint(step)
    info = {"run": run.name, "schedule": str(settings.get("schedule", "?")), "lr": settings.get("lr"),
            "data": str(run.manifest.get("data", {}).get("source", settings.get("data", "?"))), "step": step,
            "train_loss": ck.train_loss, "val_loss": ck.val_loss}
    return [{**info, "question_id": str(q), "margin": float(m)} for q, m in zip(summary.question_id, summary.margin)]
