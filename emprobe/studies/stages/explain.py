"""Stage ``explain`` — why EM hits some questions far more than others: the per-question EM-specific rise
(``margins/rises.parquet``, every dataset: ``ep.margins``' rises) against per-question factors measured here, at
the mean-diff direction's best layer (fixed by the directions stage, not chosen on the outcome), from
``last_prompt`` activations of every paraphrase:

- ``projection``: the base model's activation projected on the mean-diff direction (mean over paraphrases);
- ``paraphrase_spread``: the sd of that projection over a question's paraphrases (when all have ≥ 2);
- ``train_similarity``: cosine of the question's base activation with the mean training-prompt activation, both
  centred on the mean eval-question activation (how far it leans towards the training prompts);
- ``shift_alignment``: cosine of the question's activation shift (base → misaligned run) with the mean
  training-prompt shift (training prompts of the first dataset);
- ``control_shift_alignment``: the same for the aligned-data control run (its own training prompts), beside the
  misaligned run's (a factor that works as well for the control tracks fine-tuning, not misalignment).

Prior features: the base model's pre-fine-tuning ``last_prompt`` activations at the layers the priors stage uses
(a quarter, half, three quarters of the depth), averaged over paraphrases — ``explain`` refits its stacked
``prior_prediction`` from them inside every fold and permutation (never a ready-made prediction). The base margin
(headroom) and the aligned control's change come from the rises. One forward pass per model (base, misaligned,
control) over the eval prompts and the training prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import probe_layers, result_section

POSITION = "last_prompt"


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    return Stage("explain", "why EM is uneven", lambda d: run(ctx, d), 40,
                 {"perm": c.n_permutations, "seed": c.seed, "n": c.questions.n_train_prompts, "nested": True},
                 ("margins", "directions"))


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.explain import explain

    c = ctx.cfg
    factors, prior = question_factors(ctx)
    factors.reset_index().to_parquet(d / "factors.parquet", index=False)
    res = explain(ctx.path("margins", "rises.parquet"), factors, prior_features=prior,
                  n_permutations=c.n_permutations, seed=c.seed)
    return result_section(ctx, res, d)


def _acts(ctx: StudyContext, which: str, prompts, layers: list[int]):
    from emprobe.probes import extract

    return extract(ctx.model(which), prompts, positions=[POSITION], layers=layers, batch_size=ctx.cfg.eval_batch_size)


def question_factors(ctx: StudyContext) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(factors, prior_features)``, both indexed by question id (see the module docstring)."""
    from emprobe.analysis.priors.inputs import question_features
    from emprobe.probes import load_prompts

    c = ctx.cfg
    direction = ctx.direction("mean_diff")
    layer = int(direction.best_layer)
    eval_qs = ctx.question_set("eval")
    store = _acts(ctx, "base", eval_qs, sorted({layer, *probe_layers(ctx.model("base").n_layers)}))
    base, groups = store.get(POSITION, layer).double().numpy(), store.groups
    proj = pd.Series(base @ direction.vector(layer).double().numpy(), index=groups)
    out = pd.DataFrame({"projection": proj.groupby(level=0, sort=False).mean()})
    spread = proj.groupby(level=0, sort=False).std()
    if spread.notna().all():
        out["paraphrase_spread"] = spread
    per_q = _mean_by(base, groups, out.index)
    centre = per_q.mean(0)
    n_train = c.questions.n_train_prompts
    base_train = _acts(ctx, "base", load_prompts(c.datasets[0].data, limit=n_train), [layer]).get(POSITION, layer)
    out["train_similarity"] = _cosines(per_q - centre, base_train.double().numpy().mean(0) - centre)
    for name, run, data in (("shift_alignment", ctx.reference.name, c.datasets[0].data),
                            ("control_shift_alignment", ctx.control.name, c.datasets[0].control)):
        out[name] = _shift_alignment(ctx, run, load_prompts(data, limit=n_train), base, groups, out.index, layer)
    out.index = out.index.astype(str)
    out.index.name = "question_id"
    ids = list(out.index)
    prior = pd.DataFrame(question_features(store, probe_layers(ctx.model("base").n_layers), ids), index=out.index)
    prior.columns = [f"f{i}" for i in range(prior.shape[1])]
    return out, prior


def _shift_alignment(ctx: StudyContext, run: str, train, base: np.ndarray, groups: np.ndarray, order: pd.Index,
                     layer: int) -> np.ndarray:
    """Cosine of each question's activation shift (base → ``run``) with the mean shift of ``run``'s own
    training prompts (base → ``run``)."""
    tuned = _acts(ctx, run, ctx.question_set("eval"), [layer]).get(POSITION, layer).double().numpy()
    train_shift = (_acts(ctx, run, train, [layer]).get(POSITION, layer).double().numpy()
                   - _acts(ctx, "base", train, [layer]).get(POSITION, layer).double().numpy()).mean(0)
    return _cosines(_mean_by(tuned - base, groups, order), train_shift)


def _mean_by(x: np.ndarray, groups: np.ndarray, order: pd.Index) -> np.ndarray:
    """Row means of ``x`` per group, in ``order``."""
    return pd.DataFrame(x, index=groups).groupby(level=0).mean().loc[order].to_numpy()


def _cosines(rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine of each row with ``v`` (0 where either is zero)."""
    den = np.linalg.norm(rows, axis=1) * np.linalg.norm(v)
    return np.divide(rows @ v, den, out=np.zeros(len(rows)), where=den > 0)
