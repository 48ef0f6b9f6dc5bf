"""Stage ``priors`` — claim 2: do prompt-only activations before fine-tuning predict per-question EM, beyond the
headroom (base margin) and the topic (the question's category)? Target: each question's EM-specific rise
(misaligned − control change); its split-half reliability across reference pairs (bootstrap CI over questions) is
the ceiling, and the SESOI is ``claims.sesoi_rho``."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import claim_section, probe_layers

MIN_TOPIC = 2  # a category of one question says nothing about another: such questions share the topic "other"


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("priors", "claim 2: priors → per-question EM", lambda d: run(ctx, d), 15,
                 {"perm": c.n_permutations, "seed": c.seed, "priors": list(c.prior_models), "sesoi": c.claims.sesoi_rho},
                 ("margins", "directions"))


def targets(ctx: StudyContext) -> pd.DataFrame:
    """Per question and pair: base margin, misaligned change, control change, EM-specific rise — pooled over the
    study's datasets (with one dataset: that dataset's)."""
    return ctx.rises("pooled")


def topics(ctx: StudyContext) -> tuple[dict[str, str] | None, str]:
    """Each eval question's topic for the category control: its ``category``, with categories of fewer than
    ``MIN_TOPIC`` questions (and questions without one) pooled as ``other``; ``None`` and why when fewer than two
    topics are left (no topic control can be formed)."""
    qs = list(ctx.question_set("eval"))
    size = Counter(q.category for q in qs)
    topic = {q.id: q.category if q.category and size[q.category] >= MIN_TOPIC else "other" for q in qs}
    n = len(set(topic.values()))
    if n < 2:
        return None, (f"No topic control: the {len(qs)} questions form {n} topic once categories of one question "
                      "are pooled (a category seen once cannot predict a held-out question; 2 topics are needed).")
    pooled = sum(v == "other" for v in topic.values())
    return topic, (f"Topic control: {n} categories of the {len(qs)} questions" +
                   (f" ({pooled} questions in categories of one pooled as 'other')." if pooled else "."))


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
    categories, note = topics(ctx)
    res = priors(features, per_pair.assign(target=r.misaligned_change),
                 control=per_pair.assign(target=r.control_change),
                 base_margin=r.groupby("question_id", sort=False).base.mean(), categories=categories,
                 reliability=per_pair.assign(value=r.misaligned_change, control=r.control_change),
                 layers=layers, direction=direction, sesoi=c.claims.sesoi_rho, n_permutations=c.n_permutations,
                 seed=c.seed)
    given = " and ".join(res.controls) or "nothing"
    tested = (f"the leave-one-question-out ridge prediction of each question's EM-specific rise from prompt-only "
              f"activations before fine-tuning correlates with it beyond the controls (partial Spearman ρ given "
              f"{given}, on the scale of the true ρ by simulation through the same estimator), with the target's "
              "reliability (lower 95% bound) high enough to show a ρ of the SESOI")
    return claim_section(ctx, res, d, tested, f"true ρ {c.claims.sesoi_rho:g} (claims.sesoi_rho)", [note])
