"""``priors``: do prompt-only activations before fine-tuning predict per-question EM after it? (claim 2)

Features: prompt-only activations (``last_prompt``, chosen layers) of one or more models *before*
fine-tuning (e.g. a pre-trained and an instruct checkpoint), as :class:`~emprobe.probes.ActivationStore`
objects or directories. Target: a per-question score after fine-tuning (see :func:`load_target`). With the
aligned-data control's per-question change (``control``) the default target is the EM-specific part,
misaligned change − control change; the raw rise is reported next to it.

Every predictor is scored on the same leave-one-question-out folds with the same ridge estimator:
``headroom`` (the base margin only), ``activations``, ``activations+headroom`` (activations with the base
margin as an unpenalised covariate) and ``direction`` (the projection on a base-model direction). Each has a
permutation null (shuffled targets through the same estimator: on a few dozen rows LOQO ridge is biased
far below zero, and the null's mean shows by how much); the activations also get random features of equal
dimension and the partial correlation of their prediction with the target given the base margin
(Freedman–Lane permutation p). The target's split-half reliability across reference pairs
(Spearman–Brown) gives the ceiling, and ``n`` the smallest detectable ρ. With several stores each is scored
alone and all combined; the verdict uses the combined features (fixed a priori, not the best-scoring set).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from emprobe.analysis.priors.inputs import (
    feature_stores,
    load_target,
    pair_table,
    per_question,
    question_features,
)
from emprobe.analysis.priors.loqo import (
    loqo_ridge_operator,
    operator_scores,
    random_feature_rhos,
)
from emprobe.analysis.priors.result import PriorsResult
from emprobe.analysis.stats import (
    covariate_null_targets,
    min_detectable_rho,
    partial_spearman,
    permutation_pvalue,
    spearman,
    split_half_reliability,
)
from emprobe.errors import ConfigError, DataError

__all__ = ["load_target", "priors"]


def priors(features: Any = None, target: Any = None, *, control: Any = None, base_margin: Any = None,
           reliability: Any = None, layers: str | Sequence[int] | None = None, direction: Any = None,
           alpha: float = 1.0, n_permutations: int | None = None, n_random: int | None = None, seed: int = 0,
           prompts: Any = None, model: Any = None, estimator: str = "ridge", **external: Any):
    """Leave-one-question-out prediction of per-question EM from pre-fine-tuning activations, with baselines.

    ``features``: ``{name: store}`` or stores / store directories (named by their model's kind);
    ``target``: per-question rise (DataFrame ``[question_id, target(, target_kind)]``, a long per-pair table
    with a ``pair`` column, or a file for :func:`load_target`); ``control``: the aligned control's per-question
    change (same forms; makes the EM-specific target the default); ``base_margin``: the base model's
    per-question margin (headroom baseline); ``reliability``: a long ``[question_id, pair, value(, control)]``
    table of per-pair rises (default: built from ``target`` and ``control`` when they are per-pair tables, so
    the reliability is that of the EM-specific rise); ``direction``: a
    :class:`~emprobe.probes.Direction` (or directory) for the single-direction predictor. ``n_permutations``
    defaults to 1000 and ``n_random`` to 50.

    With ``prompts`` (one prompt per question id) the target is a per-question score measured elsewhere
    (``FILE[:score]``, see :func:`~emprobe.analysis.priors.external.external_priors`, which takes the other
    options, e.g. ``pca_on``, ``sesoi``): the prompt activations of ``model`` (or the store ``features``) at
    ``layers`` (default the last) by ``estimator`` (``ridge`` | ``paper``) against category-only, text-only and
    random-projection baselines on the same folds (200 permutations and 3 random draws by default).
    """
    if prompts is not None:
        from emprobe.analysis.priors.external import external_priors

        return external_priors(target, prompts=prompts, model=model, features=features, layers=layers or "-1",
                               estimator=estimator, n_permutations=200 if n_permutations is None else n_permutations,
                               n_random=3 if n_random is None else n_random, seed=seed, **external)
    if external or model is not None:
        raise ConfigError(f"{next(iter(external), 'model')}= applies to an external target: give prompts= too")
    with threadpool_limits(1):  # many small (n x n) solves: BLAS threads only contend
        return _priors(features, target, control, base_margin, reliability, layers, direction, alpha,
                       1000 if n_permutations is None else n_permutations, 50 if n_random is None else n_random,
                       seed)


def _priors(features, target, control, base_margin, reliability, layers, direction, alpha, n_permutations,
            n_random, seed) -> PriorsResult:
    stores = feature_stores(features)
    tgt = load_target(target)
    kind = str(tgt.target_kind.iloc[0])
    raw = tgt.groupby("question_id", sort=False).target.mean()
    ctrl, base = per_question(control, "control"), per_question(base_margin, "base_margin")
    if reliability is None:  # per-pair target (and control) tables carry their own reliability
        reliability = pair_table(target, control)
    qids = [q for q in raw.index if all(q in set(s.groups) for s in stores.values())
            and (ctrl is None or q in ctrl.index) and (base is None or q in base.index)]
    if len(qids) < 5:
        raise DataError(f"only {len(qids)} questions are in the target, the control/base margin and every "
                        "activation store (need >= 5)")
    y_raw = raw.loc[qids].to_numpy(float)
    targets = {"raw": y_raw}
    if ctrl is not None:
        targets = {"em_specific": y_raw - ctrl.loc[qids].to_numpy(float), "raw": y_raw}
    b = None if base is None else base.loc[qids].to_numpy(float)
    feats = {name: question_features(s, layers, qids) for name, s in stores.items()}
    if len(feats) > 1:
        feats["combined"] = np.concatenate(list(feats.values()), axis=1)
    rng = np.random.default_rng(seed)
    perm_idx = np.stack([rng.permutation(len(qids)) for _ in range(n_permutations)]) if n_permutations \
        else np.zeros((0, len(qids)), int)
    ctx = _Ctx(targets, perm_idx, b, alpha, n_permutations, seed)
    rows = [*_activation_rows(ctx, feats, n_random)]
    preds = {"question_id": qids, **{f"target_{k}": v for k, v in targets.items()}}
    preds.update({f"pred_{name}": loqo_ridge_operator(x, ctx.groups, alpha) @ ctx.y for name, x in feats.items()})
    if b is not None:
        w = loqo_ridge_operator(None, ctx.groups, covariates=b)
        rows += ctx.rows("base margin", "headroom", 1, w, raw_rho={k: spearman(b, y) for k, y in targets.items()})
        preds.update(base_margin=b, pred_headroom=w @ ctx.y)
    if ctrl is not None:
        preds["control_change"] = ctrl.loc[qids].to_numpy(float)
    if direction is not None:
        proj, label = _direction_projection(direction, stores, qids)
        rows += ctx.rows(label, "direction", 1, loqo_ridge_operator(None, ctx.groups, covariates=proj),
                         raw_rho={k: spearman(proj, y) for k, y in targets.items()})
        preds["direction_projection"] = proj
    rel = _reliability(reliability, ctrl is not None, seed)
    n = len(qids)
    return PriorsResult(
        table=pd.DataFrame(rows), predictions=pd.DataFrame(preds), n_questions=n, target_kind=kind,
        primary=next(iter(targets)), decision_features="combined" if len(stores) > 1 else next(iter(stores)),
        reliability=rel, rho_critical=min_detectable_rho(n), rho_detectable=min_detectable_rho(n, power=0.8),
        control_rise_rho=spearman(targets["raw"], preds["control_change"]) if ctrl is not None else float("nan"),
        meta={"features": {k: str(s.model.get("name")) for k, s in stores.items()}, "layers": str(layers or "all"),
              "alpha": alpha, "n_permutations": n_permutations, "n_random": n_random, "seed": seed})


class _Ctx:
    """The shared folds, targets and shuffles every predictor is scored with."""

    def __init__(self, targets: dict[str, np.ndarray], perm_idx: np.ndarray, base: np.ndarray | None,
                 alpha: float, n_permutations: int, seed: int) -> None:
        self.targets, self.perm_idx, self.base, self.alpha = targets, perm_idx, base, alpha
        self.n_permutations, self.seed = n_permutations, seed
        self.y = next(iter(targets.values()))
        self.groups = np.arange(len(self.y))

    def rows(self, features: str, predictor: str, dim: int, w: np.ndarray, raw_rho: dict | None = None,
             random: np.ndarray | None = None) -> list[dict]:
        out = []
        for i, (tname, y) in enumerate(self.targets.items()):
            row = {"target": tname, "features": features, "predictor": predictor, "dim": dim,
                   **operator_scores(w, y, y[self.perm_idx]), "n_permutations": self.n_permutations}
            if raw_rho is not None:
                row["raw_rho"] = raw_rho[tname]
            if random is not None:
                r = random[:, i]
                row.update(random_rho_mean=float(r.mean()), random_rho_sd=float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                           random_rho_95=float(np.quantile(r, 0.95)), p_random=permutation_pvalue(row["spearman_rho"], r))
            if predictor == "activations" and self.base is not None:
                row.update(self.partial(w, y))
            out.append(row)
        return out

    def partial(self, w: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Partial ρ of the activation prediction with ``y`` given the base margin; Freedman–Lane p."""
        obs = partial_spearman(w @ y, y, self.base)
        null_y = covariate_null_targets(y, self.base, self.n_permutations, self.seed + 1)
        null = partial_spearman(null_y @ w.T, null_y, self.base) if len(null_y) else np.zeros(0)
        return {"partial_rho": obs, "partial_p": permutation_pvalue(obs, null)}


def _activation_rows(ctx: _Ctx, feats: dict[str, np.ndarray], n_random: int):
    ys = np.stack(list(ctx.targets.values()))
    for name, x in feats.items():
        rand = random_feature_rhos(x.shape, ys, ctx.groups, ctx.alpha, n_random, ctx.seed) if n_random else None
        yield from ctx.rows(name, "activations", x.shape[1], loqo_ridge_operator(x, ctx.groups, ctx.alpha),
                            random=rand)
        if ctx.base is not None:
            w = loqo_ridge_operator(x, ctx.groups, ctx.alpha, covariates=ctx.base)
            yield from ctx.rows(name, "activations+headroom", x.shape[1] + 1, w)


def _direction_projection(direction: Any, stores: dict[str, Any], qids: list[str]) -> tuple[np.ndarray, str]:
    """Per-question projection on ``direction`` at its best layer, from the store of the direction's model."""
    from emprobe.probes import Direction
    from emprobe.probes.store import model_identity

    d = Direction.load(direction)
    want = model_identity(d.source.get("model", {})) if d.source.get("model") else None
    match = [s for s in stores.values() if want is None or model_identity(s.model) == want]
    if not match:
        raise DataError(f"no feature store comes from the direction's model {want}")
    store = match[0]
    proj = d.project(store, layer=d.best_layer, position="last_prompt")
    per_q = np.array([proj[store.groups == q].mean() for q in qids])
    return per_q, f"direction:{d.method}@L{d.best_layer}"


def _reliability(table: Any, adjusted: bool, seed: int) -> dict[str, Any]:
    """Split-half reliability of the primary target from a per-pair table (NaN figures without one)."""
    empty = {"reliability": float("nan"), "split_half_r": float("nan"), "ceiling_rho": float("nan"),
             "n_questions": 0, "pairs_per_question": 0.0, "of": "none (no per-pair table given)"}
    if table is None:
        return empty
    df = table if isinstance(table, pd.DataFrame) else load_pair_table(table)
    value = next((c for c in ("value", "rise", "target") if c in df.columns), None)
    if value is None:
        raise DataError(f"reliability table needs a value column (value / rise / target); has {list(df.columns)}")
    of = "raw rise"
    if adjusted and "control" in df.columns:
        df = df.assign(**{value: df[value] - df["control"]})
        of = "EM-specific rise (per-pair rise − control change)"
    out = split_half_reliability(df[["question_id", "pair", value]], seed=seed, value=value)
    out["of"] = of if out["n_questions"] >= 3 else "none (fewer than 3 questions with >= 2 pairs)"
    return out


def load_pair_table(path: Any) -> pd.DataFrame:
    """A per-pair table from a CSV/parquet file."""
    from emprobe.io import read_table

    return read_table(path, "per-pair table")
