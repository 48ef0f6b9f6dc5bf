"""Per-question off-domain margins of every checkpoint of a set of runs (what dynamics and monitor read).

Each run's checkpoints are scored with one loaded base model (adapters switched) and cached under
``RUN/eval/<questions>-margin/step-XXXXXX/`` (see :func:`emprobe.evaluation.sweep_run`). Step 0 of every
run is the untouched base model (a LoRA adapter starts with ``B = 0``; a full fine-tune's step 0 holds the
base weights), so identical step-0 checkpoints are scored **once**: the table is keyed by the base model
spec and the question set's hash, and copied into the other runs' caches instead of being rescored.

The result is a long table, one row per (run, checkpoint, question): ``run``, ``schedule``, ``lr``,
``data``, ``step``, ``train_loss``, ``val_loss``, ``question_id``, ``margin``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emprobe.errors import DataError

#: one row per checkpoint (the per-question ``margin`` averaged into ``ood_score``)
CHECKPOINT_COLUMNS = ("run", "schedule", "lr", "data", "step", "train_loss", "val_loss")


def resolve_runs(runs: Any) -> list:
    """Runs from a sweep directory (every ``*/run.json`` under it), one run directory, a :class:`Run`, or a
    list of runs / run directories; sorted by name for a sweep directory, in the given order otherwise."""
    from emprobe.finetuning import Run

    if isinstance(runs, Run):
        return [runs]
    if isinstance(runs, (str, Path)):
        root = Path(runs)
        if (root / "run.json").is_file():
            return [Run.load(root)]
        found = [Run.load(p.parent) for p in sorted(root.glob("*/run.json"))]
        if not found:
            raise DataError(f"{root}: no run directories (no */run.json)")
        return found
    out = [Run.load(r) for r in runs]
    if not out:
        raise DataError("no runs given")
    names = [r.name for r in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise DataError(f"two runs share the directory name {dup[0]!r}; runs are told apart by name")
    return out


def base_key(run, questions) -> str:
    """Cache key of a run's step-0 scores: the base model spec (adapter cleared) + the question set's hash."""
    from emprobe.io import content_hash

    return content_hash({"model": {**run.model_spec, "adapter": None}, "questions": questions.sha256})


def _reuse_step0(run, out: Path, cached, questions) -> bool:
    """Copy ``cached`` (another run's step-0 table) into ``run``'s cache unless it already holds one."""
    from emprobe.evaluation import ScoreTable
    from emprobe.finetuning.run import checkpoint_name

    target = out / checkpoint_name(0)
    if ScoreTable.reusable(target, "margin", questions):
        return False
    ckpt = run.checkpoint(0)
    man = {**cached.manifest, "run": str(run.path), "checkpoint": str(ckpt.path), "train_loss": ckpt.train_loss,
           "val_loss": ckpt.val_loss, "reused_from": cached.manifest.get("checkpoint"),
           "adapter": str(ckpt.path) if ckpt.kind == "lora" else None}
    ScoreTable(cached.scores, cached.summary, man).save(target, overwrite=True)
    return True


def score_checkpoints(runs: list, questions: Any = "builtin:em-core", *, batch_size: int = 8, merge: bool = False,
                      log: Callable[[str], Any] | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Per-question margins of every checkpoint of ``runs`` (long table, see the module docstring) and
    counts ``{"scored": ..., "reused": ...}`` (reused = step-0 tables shared between runs). ``merge`` merges
    each LoRA checkpoint into the weights while it is scored (faster; the base weights are restored exactly)."""
    from emprobe.data import load_questions
    from emprobe.evaluation import ScoreTable, scorer, sweep_run

    qs = load_questions(questions).with_references()
    score = scorer("margin", qs, batch_size=batch_size)
    base_cache: dict[str, Any] = {}
    rows, counts = [], {"scored": 0, "reused": 0}
    for run in runs:
        out = run.path / "eval" / f"{qs.name}-margin"
        key = base_key(run, qs)
        has0 = any(c.step == 0 for c in run.checkpoints())
        if has0 and key in base_cache and _reuse_step0(run, out, base_cache[key], qs):
            counts["reused"] += 1
        res = sweep_run(run, score, out=out, log=log, reuse=lambda d: ScoreTable.reusable(d, "margin", qs),
                        **({"merge": True} if merge else {}))
        counts["scored"] += len(res.tables) - len(res.skipped)
        if 0 in res.tables:
            base_cache.setdefault(key, res.tables[0])
        rows += _margin_rows(run, res.tables)
    df = pd.DataFrame(rows)
    if df.empty or df.val_loss.isna().all():
        raise DataError("no checkpoint has both a validation loss and a score")
    return df.dropna(subset=["val_loss"]).reset_index(drop=True), counts


def _margin_rows(run, tables: dict) -> list[dict]:
    settings = run.settings
    info = {"run": run.name, "schedule": str(settings.get("schedule", "?")), "lr": settings.get("lr"),
            "data": str(run.manifest.get("data", {}).get("source", settings.get("data", "?")))}
    rows = []
    for c in run.checkpoints():
        if c.step not in tables:
            continue
        s = tables[c.step].summary
        rows += [{**info, "step": c.step, "train_loss": c.train_loss, "val_loss": c.val_loss,
                  "question_id": str(q), "margin": float(m)} for q, m in zip(s.question_id, s.margin)]
    return rows


def checkpoint_table(margins: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, checkpoint) with ``ood_score`` = the mean per-question margin."""
    keys = [c for c in CHECKPOINT_COLUMNS if c in margins.columns] + \
           [c for c in ("control",) if c in margins.columns]
    g = margins.groupby(["run", "step"], sort=False)
    first = g[[c for c in keys if c not in ("run", "step")]].first()
    return first.assign(ood_score=g.margin.mean()).reset_index()[keys + ["ood_score"]]
