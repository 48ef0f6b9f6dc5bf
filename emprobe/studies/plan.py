"""What a study scores: each checkpoint's off-domain margins only where an analysis reads them, by the rule of
:func:`emprobe.analysis.margins.scoring.checkpoint_plan` (the study's margins stage calls ``ep.margins``, which
scores by it):

* the base model (every run's step 0): once, every reference pair;
* every run's last step: every pair (the per-question rises, their reliability across pairs and the causal
  selection read them);
* the misaligned runs' intermediate checkpoints: the first :data:`TREND_PAIRS` pair(s) (claim 1's
  loss-vs-margin trajectories and the margins plot read pair 0);
* controls' intermediate checkpoints: not at all (nothing reads them).

Checkpoints with equal weights (warmup-stable-decay before its decay = constant at the same lr and seed) are
scored once when the scores are computed (:meth:`~emprobe.finetuning.run.Checkpoint.digest`);
:func:`expected_duplicates` predicts them from the config, for the cost model.
"""

from __future__ import annotations

from dataclasses import dataclass

from emprobe.studies.cells import Cell, cells
from emprobe.studies.config import StudyConfig

#: reference pairs the study scores at intermediate checkpoints (``ep.margins(trend_pairs=...)``)
TREND_PAIRS = 1


@dataclass(frozen=True)
class ScoreJob:
    """Score ``run`` (``"base"``: the untouched model) at ``step`` on the first ``pairs`` reference pairs
    (``None``: all of them)."""

    run: str
    step: int
    pairs: int | None


def margin_plan(cfg: StudyConfig) -> list[ScoreJob]:
    """The checkpoints to score and on how many pairs (see the module docstring), base model first."""
    from emprobe.analysis.margins.scoring import checkpoint_plan

    steps = cfg.training.checkpoints()
    jobs = [ScoreJob("base", 0, None)]
    for cell in cells(cfg):
        plan = checkpoint_plan(steps, control=cell.control, trend_pairs=TREND_PAIRS)
        jobs += [ScoreJob(cell.name, s, p) for s, p in plan.items() if s > 0]
    return jobs


def _same_weights(a: Cell, b: Cell, step: int, cfg: StudyConfig) -> bool:
    """Whether run ``a`` at ``step`` is run ``b`` at ``step`` (a warmup-stable-decay run before its decay is the
    constant run with the same data, lr and seed)."""
    t = cfg.training
    decay_start = t.steps - min(round(t.decay_fraction * t.steps), t.steps - t.warmup_steps)
    return ({a.schedule, b.schedule} == {"warmup-stable-decay", "constant"} and step <= decay_start
            and (a.data, a.lr, a.seed, a.mitigation) == (b.data, b.lr, b.seed, b.mitigation))


def expected_duplicates(cfg: StudyConfig, jobs: list[ScoreJob] | None = None) -> set[ScoreJob]:
    """Jobs whose checkpoint equals one scored before it on at least as many pairs (predicted from the config)."""
    jobs = jobs if jobs is not None else margin_plan(cfg)
    by_name = {c.name: c for c in cells(cfg)}
    done: list[ScoreJob] = []
    dup = set()
    for j in jobs:
        cell = by_name.get(j.run)
        twin = cell is not None and any(
            d.step == j.step and d.run in by_name and (d.pairs is None or (j.pairs is not None and d.pairs >= j.pairs))
            and _same_weights(cell, by_name[d.run], j.step, cfg) for d in done)
        if twin:
            dup.add(j)
        done.append(j)
    return dup
