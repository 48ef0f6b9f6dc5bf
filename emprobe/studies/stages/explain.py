"""Stage ``explain`` — why EM hits some questions far more than others: the per-question EM-specific rise
(``margins/rises.parquet``) against per-question factors measured here, at the mean-diff direction's best layer
(fixed by the directions stage, not chosen on the outcome), from ``last_prompt`` activations of every paraphrase:

- ``projection``: the base model's activation projected on the mean-diff direction (mean over paraphrases);
- ``paraphrase_spread``: the sd of that projection over a question's paraphrases (when all have ≥ 2);
- ``train_similarity``: cosine of the question's base activation with the mean training-prompt activation, both
  centred on the mean eval-question activation (how far it leans towards the training prompts);
- ``shift_alignment``: cosine of the question's activation shift (base → misaligned run) with the mean
  training-prompt shift (training prompts of the first dataset);
- ``prior_prediction``: the priors stage's leave-one-question-out prediction, when it wrote one.

The base margin (headroom) comes from the rises. One forward pass per model (base, misaligned) over the eval
prompts and the training prompts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emprobe.studies.context import StudyContext
from emprobe.studies.pipeline import Stage
from emprobe.studies.stages.common import result_section

POSITION = "last_prompt"


def stage(ctx: StudyContext) -> Stage:
    c = ctx.cfg
    depends = ("margins", "directions", *(("priors",) if "priors" in c.stages else ()))
    return Stage("explain", "why EM is uneven", lambda d: run(ctx, d), 30,
                 {"perm": c.n_permutations, "seed": c.seed, "n": c.questions.n_train_prompts}, depends)


def run(ctx: StudyContext, d: Path) -> dict:
    from emprobe.analysis.explain import explain

    c = ctx.cfg
    rises = pd.read_parquet(ctx.path("margins", "rises.parquet"))
    factors = question_factors(ctx)
    prior = prior_prediction(ctx.path("priors", "result"))
    if prior is not None:
        factors["prior_prediction"] = prior.reindex(factors.index)
    factors.reset_index().to_parquet(d / "factors.parquet", index=False)
    res = explain(rises, factors, n_permutations=c.n_permutations, seed=c.seed)
    return result_section(ctx, res, d)


def question_factors(ctx: StudyContext) -> pd.DataFrame:
    """Per-question activation factors (see the module docstring), indexed by question id."""
    from emprobe.probes import extract, load_prompts

    c = ctx.cfg
    direction = ctx.direction("mean_diff")
    layer = int(direction.best_layer)
    train = load_prompts(c.datasets[0].data, limit=c.questions.n_train_prompts)

    def acts(which: str, prompts) -> tuple[np.ndarray, np.ndarray]:
        store = extract(ctx.model(which), prompts, positions=[POSITION], layers=[layer], batch_size=c.eval_batch_size)
        return store.get(POSITION, layer).double().numpy(), store.groups

    base, groups = acts("base", ctx.question_set("eval"))
    tuned, _ = acts(ctx.reference.name, ctx.question_set("eval"))
    base_train, _ = acts("base", train)
    tuned_train, _ = acts(ctx.reference.name, train)
    proj = pd.Series(base @ direction.vector(layer).double().numpy(), index=groups)
    out = pd.DataFrame({"projection": proj.groupby(level=0, sort=False).mean()})
    spread = proj.groupby(level=0, sort=False).std()
    if spread.notna().all():
        out["paraphrase_spread"] = spread
    per_q = _mean_by(base, groups, out.index)
    centre = per_q.mean(0)
    out["train_similarity"] = _cosines(per_q - centre, base_train.mean(0) - centre)
    shift = _mean_by(tuned - base, groups, out.index)
    out["shift_alignment"] = _cosines(shift, (tuned_train - base_train).mean(0))
    out.index = out.index.astype(str)
    out.index.name = "question_id"
    return out


def _mean_by(x: np.ndarray, groups: np.ndarray, order: pd.Index) -> np.ndarray:
    """Row means of ``x`` per group, in ``order``."""
    return pd.DataFrame(x, index=groups).groupby(level=0).mean().loc[order].to_numpy()


def _cosines(rows: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosine of each row with ``v`` (0 where either is zero)."""
    den = np.linalg.norm(rows, axis=1) * np.linalg.norm(v)
    return np.divide(rows @ v, den, out=np.zeros(len(rows)), where=den > 0)


def prior_prediction(result_dir: Path) -> pd.Series | None:
    """The priors stage's per-question LOQO prediction from activations (its combined feature set when there
    are several), or ``None`` when that stage did not run or wrote none."""
    for path in sorted(Path(result_dir).glob("*.parquet")) if Path(result_dir).is_dir() else []:
        df = pd.read_parquet(path)
        preds = [col for col in df.columns if col.startswith("pred_") and col != "pred_headroom"]
        if "question_id" in df.columns and preds:
            col = "pred_combined" if "pred_combined" in preds else preds[0]
            return df.assign(question_id=df.question_id.astype(str)).groupby("question_id")[col].mean()
    return None
