"""Stage ``track``: the base-model directions followed through the misaligned run's checkpoints, and through its
aligned-data control (at both ends) as the control: a direction that moves as much in the control run tracks
fine-tuning in general, not misalignment (:class:`~emprobe.analysis.track.ControlledTrack`)."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage


def stage(ctx: StudyContext) -> Stage:
    return Stage("track", "directions through the checkpoints", lambda d: run(ctx, d), 45,
                 {"seed": ctx.cfg.seed}, ("setup", "finetune", "directions"))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.track import ControlledTrack, track

    c = ctx.cfg
    dirs = [ctx.direction("mean_diff"), ctx.direction("persona")]
    kw = dict(refit=False, n_random=20, batch_size=c.eval_batch_size, seed=c.seed, merge=True)
    res = ControlledTrack(track(ctx.run(ctx.reference), dirs, ctx.question_set("eval"), **kw),
                          track(ctx.run(ctx.control), dirs, ctx.question_set("eval"), steps=[0, ctx.last_step], **kw))
    res.save(d)
    return res.to_section(plots=[ctx.rel(d / "result" / "plot.png"), ctx.rel(d / "control" / "plot.png")])
