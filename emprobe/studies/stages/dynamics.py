"""Stage ``dynamics`` — claim 1: in-domain loss vs off-domain alignment. Every checkpoint of every non-control run,
schedules compared at matched in-domain loss (controls never enter the comparison)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section


def stage(ctx: StudyContext) -> Stage:
    return Stage("dynamics", "claim 1: loss vs off-domain alignment across schedules", lambda d: run(ctx, d), 5,
                 {"perm": ctx.cfg.n_permutations, "seed": ctx.cfg.seed, "min_gap": ctx.cfg.min_gap},
                 ("finetune", "margins"))


def checkpoint_table(ctx: StudyContext, mitigated: bool = False) -> pd.DataFrame:
    """Per (run, checkpoint, question): run, dataset, schedule, lr, seed, control, step, val_loss, question_id,
    margin (first reference pair: scored at every checkpoint). Claim 1 compares the unmitigated runs only
    (``mitigated``: every run of the grid's mitigations axis too)."""
    pairs = ctx.margins()
    first = pairs[pairs.pair == 0][["run", "step", "question_id", "margin"]]
    losses = ctx.losses()
    if not mitigated:
        losses = losses[losses.run.isin({c.name for c in ctx.cells if c.mitigation == "none"})]
    return losses.merge(first, on=["run", "step"], how="inner").dropna(subset=["val_loss"])


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.dynamics import dynamics

    table = checkpoint_table(ctx)
    table.to_parquet(d / "checkpoints.parquet", index=False)
    res = dynamics(table, n_permutations=ctx.cfg.n_permutations, seed=ctx.cfg.seed, min_gap=ctx.cfg.min_gap)
    return result_section(ctx, res, d)
