"""Stage ``dynamics`` — claim 1: in-domain loss vs off-domain alignment. Every checkpoint of every non-control run,
schedules compared at matched in-domain loss (controls never enter the comparison). The runs' seeds tell the
hierarchical bootstrap (runs within a schedule, then questions) and the seed-noise floor apart; the SESOI is
``claims.sesoi_fraction`` of the established EM-specific rise, or ``claims.sesoi_gap`` nats/token."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import claim_section


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("dynamics", "claim 1: loss vs off-domain alignment across schedules", lambda d: run(ctx, d), 5,
                 {"perm": c.n_permutations, "seed": c.seed, "sesoi": [c.claims.sesoi_fraction, c.claims.sesoi_gap]},
                 ("finetune", "margins"))


def checkpoint_table(ctx: StudyContext, mitigated: bool = False) -> pd.DataFrame:
    """Per (run, checkpoint, question): run, dataset, schedule, lr, seed (each run's: the bootstrap resamples runs
    of a schedule and the noise floor compares seeds), control, step, val_loss, question_id, margin (first
    reference pair: scored at every checkpoint). Claim 1 compares the unmitigated runs only (``mitigated``: every
    run of the grid's mitigations axis too)."""
    pairs = ctx.margins()
    first = pairs[pairs.pair == 0][["run", "step", "question_id", "margin"]]
    losses = ctx.losses()
    if not mitigated:
        losses = losses[losses.run.isin({c.name for c in ctx.cells if c.mitigation == "none"})]
    return losses.merge(first, on=["run", "step"], how="inner").dropna(subset=["val_loss"])


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.dynamics import dynamics

    c = ctx.cfg.claims
    table = checkpoint_table(ctx)
    table.to_parquet(d / "checkpoints.parquet", index=False)
    res = dynamics(table, n_permutations=ctx.cfg.n_permutations, seed=ctx.cfg.seed, sesoi=c.sesoi_gap,
                   sesoi_fraction=c.sesoi_fraction)
    n_seeds = table[~table.control].groupby(["dataset", "schedule", "lr"]).seed.nunique().min()
    tested = ("at matched in-domain validation loss, every two schedules' off-domain margins (per dataset, "
              f"{n_seeds} seed(s) per schedule x lr) lie within ±SESOI (90% TOST, hierarchical bootstrap over runs "
              "then questions), once the misaligned runs' rise over step 0 is established (95% CI above 0)")
    limits = "; ".join(f"{k}: {v.text if v.usable else 'none (see the reason)'}" for k, v in res.limits.items())
    sesoi = (f"{c.sesoi_gap:g} nats/token (claims.sesoi_gap)" if c.sesoi_gap else
             f"{c.sesoi_fraction:.0%} of the EM-specific rise (claims.sesoi_fraction)") + (f" — {limits}" if limits else "")
    return claim_section(ctx, res, d, tested, sesoi)
