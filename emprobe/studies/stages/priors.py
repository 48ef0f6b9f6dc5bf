"""Stage ``priors`` — claim 2: do prompt-only activations before fine-tuning predict per-question EM, beyond the
headroom (base margin) baseline? Target: each question's EM-specific rise (misaligned − control change), with
its split-half reliability across reference pairs as the ceiling."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import probe_layers, result_section


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("priors", "claim 2: priors → per-question EM", lambda d: run(ctx, d), 15,
                 {"perm": c.n_permutations, "seed": c.seed, "priors": list(c.prior_models)},
                 ("margins", "directions"))


def targets(ctx: StudyContext) -> pd.DataFrame:
    """Per question and pair: base margin, misaligned change, control change, EM-specific rise — pooled over the
    study's datasets (with one dataset: that dataset's)."""
    return ctx.rises("pooled")


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.priors import priors
    from emprobe.probes import extract

    c = ctx.cfg
    direction = ctx.direction("mean_diff")
    stores, layers = {}, None
    for name, lm in ctx.prior_models().items():  # named by the config's kind, else by the model's own kind
        layers = probe_layers(lm.n_layers)  # features: fixed depths; the direction's own layer for its projection
        stores[name] = extract(lm, ctx.question_set("eval"), positions=["last_prompt"],
                               layers=sorted({*layers, direction.best_layer}), batch_size=c.eval_batch_size)
    features = stores if c.prior_models else list(stores.values())
    r = targets(ctx)
    per_pair = r[["question_id", "pair"]]
    res = priors(features, per_pair.assign(target=r.misaligned_change),
                 control=per_pair.assign(target=r.control_change),
                 base_margin=r.groupby("question_id", sort=False).base.mean(),
                 layers=layers, direction=direction, n_permutations=c.n_permutations, seed=c.seed)
    return result_section(ctx, res, d)
