"""Stage ``finetune``: every run of the grid and each dataset's aligned-data control, trained in parallel
subprocesses (cores split between them; or on a Ray cluster: ``StudyContext.executor``), then their losses in one
table (:class:`~emprobe.finetuning.result.TrainingResult`)."""

from __future__ import annotations

from pathlib import Path

from emprobe.errors import EmprobeError
from emprobe.studies.cells import finetune_config
from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import plot_section


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    cfgs = {cell.name: finetune_config(c, cell, ctx.runs_dir).to_dict() for cell in ctx.cells}
    for v in cfgs.values():
        v.pop("out"), v.pop("resume"), v.pop("progress")
    per_run = 8.0 * c.training.steps * (c.training.batch_size / 4)  # ~s per run on one core, SmolLM2
    uses = set().union(*(m.directions() for m in c.grid.mitigations))  # steered / ablated with the study's own
    return Stage("finetune", f"fine-tune {len(cfgs)} runs (incl. controls)", lambda d: run(ctx, d),
                 per_run * len(cfgs) / 2, {"runs": cfgs}, ("directions",) if uses else ())


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.finetuning.executors import get_executor
    from emprobe.finetuning.result import TrainingResult

    c = ctx.cfg
    ctx.model("base")  # prepares a built-in model once here, not in every trainer process at the same time
    todo = ctx.cells
    outcomes = get_executor(ctx.executor, threads=c.threads, **ctx.executor_options).run(
        [finetune_config(c, cell, ctx.runs_dir) for cell in todo], names=[cell.name for cell in todo], log=ctx.log)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise EmprobeError(f"{len(failed)} fine-tuning run(s) failed, e.g. {failed[0].name}: {failed[0].error}")
    res = TrainingResult.from_runs(
        {cell.name: ctx.run(cell) for cell in todo}, labels={x.name: x.label() for x in todo},
        controls={x.name for x in todo if x.control}, reference=ctx.reference.name, control_run=ctx.control.name,
        seconds={o.name: o.seconds for o in outcomes},
        extra={x.name: {"dataset": x.dataset, "schedule": x.schedule, "lr": x.lr, "seed": x.seed,
                        "mitigation": x.mitigation} for x in todo})
    res.losses.to_parquet(d / "losses.parquet", index=False)
    return plot_section(ctx, res, d, checkpoints=c.training.checkpoints(),
                        runs=[{"run": x.name, "label": x.label(), "control": x.control} for x in todo])
