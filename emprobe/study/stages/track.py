"""Stage ``track``: the base-model directions followed through the misaligned run's checkpoints, and through its
aligned-data control (at both ends) as the control."""

from __future__ import annotations

from pathlib import Path

from emprobe.study.pipeline import Stage
from emprobe.study.stages.common import result_section


def stage(ctx) -> Stage:
    return Stage("track", "directions through the checkpoints", lambda d: run(ctx, d), 45,
                 {"seed": ctx.cfg.seed}, ("setup", "finetune", "directions"))


def run(ctx, d: Path) -> dict:
    from emprobe.analysis import track

    c = ctx.cfg
    dirs = [ctx.direction("mean_diff"), ctx.direction("persona")]
    control = track(ctx.run(ctx.control), dirs, ctx.qs("eval"), refit=False, n_random=20,
                    batch_size=c.eval_batch_size, seed=c.seed, steps=[0, ctx.last_step], merge=True)
    control.save(d / "control")
    res = track(ctx.run(ctx.reference), dirs, ctx.qs("eval"), refit=False, n_random=20, batch_size=c.eval_batch_size,
                seed=c.seed, merge=True, control=control)
    return result_section(ctx, res, d)
