"""Score every checkpoint of a fine-tuning run with one loaded base model (adapters switched, not reloaded).

Uses :meth:`emprobe.finetuning.run.Run.iter_models`; the time spent inside the iterator between two
checkpoints (``set_adapter`` for LoRA runs, an in-place weight copy for full fine-tunes) is recorded per
checkpoint as ``switch_seconds`` (the first entry includes loading the base and attaching the adapters).
Checkpoints whose score table already exists under ``out`` are skipped unless ``overwrite``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import pandas as pd

from emprobe.evaluation.tables import ScoreTable, combine_summaries, write_sweep_index
from emprobe.finetuning.run import Run, checkpoint_name
from emprobe.result import Result, figure_for


@dataclass(frozen=True, eq=False)
class CheckpointScores(Result):
    """Score tables by step (one :class:`ScoreTable` per checkpoint of a run), plus where the time went."""

    by_step: dict[int, ScoreTable]
    switch_seconds: dict[int, float] = field(default_factory=dict)
    score_seconds: dict[int, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    skipped: list[int] = field(default_factory=list)
    out: Path | None = None

    name: ClassVar[str] = "checkpoint-scores"
    title: ClassVar[str] = "Scores along a run's checkpoints"

    def per_question(self) -> pd.DataFrame:
        """All per-question summaries with a ``step`` column."""
        return combine_summaries(self.by_step)

    def _trend(self) -> pd.Series:
        """The headline score's mean over questions, per step."""
        return pd.Series({step: t.numbers()[f"mean_{t._mean()[0]}"] for step, t in sorted(self.by_step.items())})

    def findings(self) -> list[str]:
        if not self.by_step:
            return []
        m, col = self._trend(), next(iter(self.by_step.values()))._mean()[0]
        return [f"Mean {col} over questions {m.iloc[0]:+.3f} at step {m.index[0]} -> {m.iloc[-1]:+.3f} at step "
                f"{m.index[-1]} ({len(m)} checkpoints; {len(self.skipped)} reused from disk)."]

    def numbers(self) -> dict[str, Any]:
        t = self.timing()
        return {**{f"step_{k}": v for k, v in self._trend().items()},
                **{k: v for k, v in t.items() if isinstance(v, (int, float))}}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.per_question()}

    @property
    def uncertainty(self) -> str:
        return next(iter(self.by_step.values())).uncertainty if self.by_step else ""

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        m = self._trend()
        ax.plot(m.index, m.to_numpy(), marker="o")
        ax.set(xlabel="step", ylabel="mean over questions", title=self.title)
        return fig

    def timing(self) -> dict[str, Any]:
        steps = sorted(self.switch_seconds)
        later = [self.switch_seconds[s] for s in steps[1:]]
        switching = sum(self.switch_seconds.values())
        return {
            "total_seconds": round(self.total_seconds, 3),
            "first_checkpoint_seconds": round(self.switch_seconds[steps[0]], 3) if steps else None,
            "mean_switch_seconds": round(sum(later) / len(later), 4) if later else None,
            "switch_share": round(sum(later) / self.total_seconds, 4) if later and self.total_seconds else None,
            "overhead_share": round(switching / self.total_seconds, 4) if self.total_seconds else None,
            "switch_seconds": {str(k): round(v, 4) for k, v in self.switch_seconds.items()},
            "score_seconds": {str(k): round(v, 3) for k, v in self.score_seconds.items()},
        }


def sweep_run(run: Run | str | Path, score: Callable[..., ScoreTable], out: str | Path | None = None,
              steps: list[int] | None = None, overwrite: bool = False, preload: bool = True,
              log: Callable[[str], Any] | None = print, reuse: Callable[[Path], bool] | None = None,
              **load_kw: Any) -> CheckpointScores:
    """Apply ``score(lm, **manifest_fields) -> ScoreTable`` to every checkpoint of ``run``.

    ``out``: write ``out/step-XXXXXX/`` per checkpoint and the sweep index (``summary.parquet``,
    ``manifest.json``). ``reuse(dir)`` decides whether an existing checkpoint directory is kept
    (default: any complete score table). ``load_kw`` (``device``, ``dtype``) go to the base model's loader.
    """
    reuse = reuse or ScoreTable.is_complete
    run = run if isinstance(run, Run) else Run.load(run)
    ckpts = [run.checkpoint(s) for s in steps] if steps is not None else run.checkpoints()
    tables: dict[int, ScoreTable] = {}
    switch: dict[int, float] = {}
    scoring: dict[int, float] = {}
    todo, skipped = [], []
    for c in ckpts:
        d = Path(out) / checkpoint_name(c.step) if out else None
        if d is not None and not overwrite and reuse(d):
            tables[c.step] = ScoreTable.load(d)
            skipped.append(c.step)
        else:
            todo.append(c.step)
    if skipped and log:
        log(f"skipping {len(skipped)} checkpoint(s) already scored in {out} (overwrite to redo)")
    t_start = time.perf_counter()
    if todo:
        it = run.iter_models(steps=todo, preload=preload, **load_kw)
        while True:
            t0 = time.perf_counter()
            try:
                ckpt, lm = next(it)
            except StopIteration:
                break
            t1 = time.perf_counter()
            table = score(lm, run=str(run.path), step=ckpt.step, checkpoint=str(ckpt.path),
                          train_loss=ckpt.train_loss, val_loss=ckpt.val_loss)
            t2 = time.perf_counter()
            switch[ckpt.step], scoring[ckpt.step] = t1 - t0, t2 - t1
            tables[ckpt.step] = table
            if out:
                table.save(Path(out) / checkpoint_name(ckpt.step), overwrite=True)
            if log:
                log(f"step {ckpt.step}: scored in {t2 - t1:.1f}s (switch {t1 - t0:.3f}s)")
    result = CheckpointScores(tables, switch, scoring, time.perf_counter() - t_start, skipped,
                              Path(out) if out else None)
    if out:
        first = next(iter(result.by_step.values()))
        write_sweep_index(out, result.by_step, {
            "metric": first.metric, "run": str(run.path), "model": run.model_spec,
            "questions": first.manifest.get("questions"), "skipped": result.skipped, "timing": result.timing(),
        })
    return result
