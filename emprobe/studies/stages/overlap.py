"""Stage ``overlap`` — claim 3: do activation shifts on training prompts and on evaluation prompts share a subspace
*specific to misaligned training*? The misaligned run against its aligned-data control (a LoRA moves every prompt
along a common direction, so random subspaces are a control any fine-tune beats). Both halves of the claim — the
mean-removed subspace overlap and the pair-similarity ρ, misaligned − control — are held to their SESOIs
``claims.sesoi_overlap`` and ``claims.sesoi_pair_rho``."""

from __future__ import annotations

from pathlib import Path

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import claim_section


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("overlap", "claim 3: train/eval shift overlap vs the aligned control", lambda d: run(ctx, d), 40,
                 {"n": c.questions.n_train_prompts, "seed": c.seed, "perm": c.n_permutations,
                  "sesoi": [c.claims.sesoi_overlap, c.claims.sesoi_pair_rho]}, ("setup", "finetune"))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.overlap import overlap
    from emprobe.probes import load_prompts

    c = ctx.cfg
    n = ctx.model("base").n_layers
    train = load_prompts(ctx.cfg.datasets[0].data, limit=c.questions.n_train_prompts)
    res = overlap(ctx.model("base"), ctx.model(ctx.reference.name), train=train, questions=ctx.question_set("eval"),
                  control=ctx.model(ctx.control.name), layers=list(range(1, n, max(1, n // 8))), ks=(1, 2, 4),
                  n_random=200, n_permutations=c.n_permutations, batch_size=c.eval_batch_size, seed=c.seed,
                  sesoi=c.claims.sesoi_overlap, sesoi_pair_rho=c.claims.sesoi_pair_rho)
    tested = (f"on the eval questions held out from the layer/k choice (layer {res.layer}, k = {res.k}), misaligned − "
              "aligned control: (a) the overlap of the train- and eval-prompt shift subspaces (each set's mean shift "
              "removed) and (b) the pair-similarity ρ (prompt similarity vs shift similarity), paired bootstrap 95% "
              "CIs; supported when both are above 0, not supported when either is shown below its SESOI")
    sesoi = (f"misaligned − control mean-removed overlap {c.claims.sesoi_overlap:g} (claims.sesoi_overlap) and "
             f"pair-similarity ρ {c.claims.sesoi_pair_rho:g} (claims.sesoi_pair_rho)")
    return claim_section(ctx, res, d, tested, sesoi)
