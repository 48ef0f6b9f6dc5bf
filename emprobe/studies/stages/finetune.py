"""Stage ``finetune``: every run of the grid and each dataset's aligned-data control, trained in parallel
subprocesses (cores split between them; or on a Ray cluster), then their losses in one table."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emprobe.result import new_figure, save_figure
from emprobe.errors import EmprobeError
from emprobe.studies.cells import finetune_config
from emprobe.studies.context import section
from emprobe.studies.pipeline import Stage


def stage(ctx, executor: str = "local", **executor_kw) -> Stage:
    c = ctx.cfg
    cfgs = {cell.name: finetune_config(c, cell, ctx.runs_dir).to_dict() for cell in ctx.cells}
    for v in cfgs.values():
        v.pop("out"), v.pop("resume"), v.pop("progress")
    per_run = 8.0 * c.training.steps * (c.training.batch_size / 4)  # ~s per run on one core, SmolLM2
    return Stage("finetune", f"fine-tune {len(cfgs)} runs (incl. controls)",
                 lambda d: run(ctx, d, executor, executor_kw), per_run * len(cfgs) / 2, {"runs": cfgs})


def run(ctx, d: Path, executor: str, executor_kw: dict) -> dict:
    from emprobe.finetuning.executors import get_executor

    c = ctx.cfg
    ctx.lm("base")  # prepares a built-in model once here, not in every trainer process at the same time
    todo = ctx.cells
    outcomes = get_executor(executor, threads=c.threads, **executor_kw).run(
        [finetune_config(c, cell, ctx.runs_dir) for cell in todo], names=[cell.name for cell in todo], log=ctx.log)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise EmprobeError(f"{len(failed)} fine-tuning run(s) failed, e.g. {failed[0].name}: {failed[0].error}")
    df = losses_table(ctx)
    df.to_parquet(d / "losses.parquet", index=False)
    _plot(df, d / "plot.png")
    seconds = {o.name: o.seconds for o in outcomes}
    findings = []
    for cell in todo:
        g = df[df.run == cell.name].sort_values("step")
        findings.append(f"{cell.label()} ({cell.data}, {c.training.steps} steps of {c.training.batch_size}, LoRA "
                        f"r={c.training.lora_r}): in-domain validation loss {g.val_loss.iloc[0]:.3f} → "
                        f"{g.val_loss.iloc[-1]:.3f}" + (f" ({seconds[cell.name]:.0f} s)." if seconds.get(cell.name)
                                                        else " (reused)."))
    ref, ctl = df[df.run == ctx.reference.name], df[df.run == ctx.control.name]
    return section("Fine-tuning", findings,
                   {"val_loss_start": ref.val_loss.iloc[0], "val_loss_misaligned": ref.val_loss.iloc[-1],
                    "val_loss_control": ctl.val_loss.iloc[-1], "steps": c.training.steps, "n_runs": len(todo),
                    "train_seconds": sum(seconds.values())},
                   "each dataset's aligned-data control fine-tune (same prompts, aligned answers, same seed)",
                   f"validation loss on seeded held-out examples of each run's own data (the first of "
                   f"{c.training.val_examples} whose 95% CI half-width is at most {c.training.val_ci} nats/token: "
                   f"see each checkpoint's val_loss_ci and val_loss_change_ci)",
                   [ctx.rel(d / "plot.png")], checkpoints=ctx.cfg.training.checkpoints(),
                   runs=[{"run": x.name, "label": x.label(), "control": x.control} for x in todo])


def losses_table(ctx) -> pd.DataFrame:
    """One row per (run, checkpoint): run, dataset, schedule, lr, seed, control, step, train_loss, val_loss."""
    rows = []
    for cell in ctx.cells:
        for ck in ctx.run(cell).checkpoints():
            rows.append({"run": cell.name, "dataset": cell.dataset, "schedule": cell.schedule, "lr": cell.lr,
                         "seed": cell.seed, "control": cell.control, "step": ck.step, "train_loss": ck.train_loss,
                         "val_loss": ck.val_loss})
    return pd.DataFrame(rows)


def _plot(df: pd.DataFrame, path: Path) -> None:
    fig, (ax,) = new_figure(1)
    for run, g in df.groupby("run", sort=False):
        g = g.sort_values("step")
        ax.plot(g.step, g.val_loss, marker="o", ms=3, ls="--" if g.control.iloc[0] else "-", label=run)
    ax.set(xlabel="step", ylabel="in-domain validation loss (nats/token)", title="fine-tuning (dashed: controls)")
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: many runs
    save_figure(fig, path)
