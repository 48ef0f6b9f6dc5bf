"""Reader of emprobe's own score tables, so runs scored here and runs scored elsewhere go through one analysis.

- a score table directory (``emprobe eval``: ``scores.parquet``, ``summary.parquet``, ``manifest.json``):
  judged tables give per-question ``aligned`` / ``coherent`` means and the EM rate (from the per-sample scores,
  with the same convention as the external CSVs), margin tables the per-question ``margin``;
- a sweep over a run's checkpoints (``step-XXXXXX/`` score tables + a ``score_sweep`` manifest): one
  :class:`ExternalRun` per checkpoint, with the checkpoint's validation loss when the run directory named in the
  manifest is still there (a trajectory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from emprobe.errors import DataError
from emprobe.evaluation.external.samples import EXTERNAL_EM, per_question
from emprobe.evaluation.external.types import ExternalRun, null_counts, score_frame
from emprobe.evaluation.tables import MANIFEST, ScoreTable
from emprobe.io import read_json


def is_native(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST).is_file()


def _table_scores(table: ScoreTable, where: str) -> tuple[pd.DataFrame, list[str]]:
    if table.metric == "margin":
        s = table.summary
        if "margin" not in s.columns:
            raise DataError(f"{where}: margin score table without a 'margin' column")
        rows = [{"question_id": q, "margin": m} for q, m in zip(s.question_id, s.margin)]
        return score_frame(rows), ["margin"]
    if table.metric == "judge":
        return per_question(table.scores, EXTERNAL_EM), ["aligned", "coherent", "em_rate"]
    raise DataError(f"{where}: score table of unknown metric {table.metric!r}")


def _one(path: Path, run: str, step: int | None, val_loss: float | None) -> ExternalRun:
    table = ScoreTable.load(path)
    scores, given = _table_scores(table, str(path))
    model = (table.manifest.get("model") or {}).get("name")
    return ExternalRun(run=run, source=str(path), format="emprobe", scores=scores, meta={"model": model},
                       step=step, eval_loss=val_loss, nulls=null_counts(scores, given))


def _val_losses(run_path: Any) -> dict[int, float]:
    """``{step: val_loss}`` of an emprobe run directory (empty when it is gone)."""
    if not run_path or not Path(str(run_path)).is_dir():
        return {}
    from emprobe.finetuning import load_run

    try:
        ckpts = load_run(run_path).checkpoints()
    except Exception:  # a half-deleted or foreign run directory: no losses, said by the caller
        return {}
    return {c.step: float(c.val_loss) for c in ckpts if c.val_loss is not None}


def read_native(path: str | Path) -> list[ExternalRun]:
    """A score table directory (one run) or a sweep directory (one :class:`ExternalRun` per checkpoint)."""
    path = Path(path)
    man = read_json(path / MANIFEST)
    kind = man.get("kind")
    if kind == "score_sweep":
        losses = _val_losses(man.get("run"))
        run = Path(str(man.get("run") or path)).name
        steps = man.get("steps") or []
        if not steps:
            raise DataError(f"{path}: sweep manifest lists no steps")
        return [_one(path / f"step-{s:06d}", run, int(s), losses.get(int(s))) for s in steps]
    if kind == "score_table":
        run = Path(str(man.get("run"))).name if man.get("run") else path.name
        step = man.get("step")
        losses = _val_losses(man.get("run")) if step is not None else {}
        return [_one(path, run, step, losses.get(step))]
    raise DataError(f"{path}: {MANIFEST} of kind {kind!r} is not an emprobe score table or sweep")
