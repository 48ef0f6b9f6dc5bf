"""Stage ``mitigations``: the runs of the grid's ``mitigations`` axis against the unmitigated runs (``none``) at
matched in-domain loss (:func:`emprobe.analysis.mitigations.mitigations`): the share of the EM-specific rise each
removes (over the aligned-data control), its in-domain loss and held-out margin costs, a verdict each, and claim 1's
positive control (claim 1's test rerun with the best mitigation's runs added as a schedule).

Reads the margins stage's first-pair margins at every checkpoint (nothing rescored) and scores the in-domain
held-out questions (setup's ``heldout.yaml``, the first dataset's) at step 0 and the last step of that dataset's runs.
"""

from __future__ import annotations

from pathlib import Path

from emprobe.errors import ConfigError
from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    names = [m.name for m in c.grid.mitigations if m.name != "none"]
    if not names:
        raise ConfigError("study stage 'mitigations' needs `grid.mitigations` with a mitigation besides none")
    n_held = c.questions.n_causal if c.datasets[0].heldout else 0
    runs = sum(not x.control and x.dataset == c.datasets[0].name for x in ctx.cells)
    return Stage("mitigations", "mitigations at matched in-domain loss; claim 1's positive control",
                 lambda d: run(ctx, d), 5 + 0.22 * 2 * n_held * (runs + 1),
                 {"perm": c.n_permutations, "seed": c.seed, "claims": [c.claims.sesoi_fraction, c.claims.sesoi_gap], "heldout": n_held},
                 ("setup", "finetune", "margins"))


def heldout_margins(ctx: StudyContext):
    """In-domain held-out margins (``run, step, question_id, margin``) at step 0 and the last step of the first
    dataset's runs, or ``None`` without a held-out set."""
    from emprobe.analysis.margins import margins

    if not ctx.cfg.datasets[0].heldout:
        return None
    runs = [ctx.run(x) for x in ctx.cells if not x.control and x.dataset == ctx.cfg.datasets[0].name]
    res = margins(runs, ctx.question_set("heldout"), steps=[0, ctx.last_step], batch_size=ctx.cfg.eval_batch_size,
                  merge=True, log=ctx.log)
    return res.loss_margins()[["run", "step", "question_id", "margin"]]


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.mitigations import mitigations
    from emprobe.studies.stages.dynamics import checkpoint_table

    c = ctx.cfg
    cell = {x.name: x for x in ctx.cells}
    table = checkpoint_table(ctx, mitigated=True)
    table = table.assign(mitigation=table.run.map(lambda r: cell[r].mitigation),
                         data=table.run.map(lambda r: cell[r].dataset), unit=table.seed.astype(str))
    table.to_parquet(d / "checkpoints.parquet", index=False)
    heldout = heldout_margins(ctx)
    if heldout is not None:
        heldout.to_parquet(d / "heldout.parquet", index=False)
    res = mitigations(table, heldout=heldout, seed=c.seed,
                      claim1_kw={"n_permutations": c.n_permutations, "sesoi_fraction": c.claims.sesoi_fraction,
                                 "sesoi": c.claims.sesoi_gap})
    return result_section(ctx, res, d)
