"""``priors``: do prompt-only activations before fine-tuning predict per-question EM after it? (claim 2)

Features: prompt-only activations (``last_prompt``, chosen layers) of one or more models *before*
fine-tuning (e.g. a pre-trained and an instruct checkpoint), as :class:`~emprobe.probes.ActivationStore`
objects or directories. Target: a per-question score after fine-tuning (see :func:`load_target`). With the
aligned-data control's per-question change (``control``) the default target is the EM-specific part,
misaligned change − control change; the raw rise is reported next to it.

Every predictor is scored on the same leave-one-question-out folds with the same ridge estimator:
``activations``; the **controls** — ``headroom`` (the base margin), ``category`` (the question's topic alone,
its category's mean over the other questions) and ``controls`` (both) — and ``activations+controls`` (activations
with the controls as unpenalised covariates); ``direction`` (the projection on a base-model direction). Each has a
permutation null (shuffled targets through the same estimator: on a few dozen rows LOQO ridge is biased below
zero, and the null's mean shows by how much). Random features of equal dimension are reported as a description
only (isotropic features have another bias than the real ones, so they are no test).

The claim is tested on the decision features (all stores combined, fixed a priori): the partial Spearman ρ of the
``activations+controls`` prediction with the target given the controls (plain ρ without controls), put on the
scale of the true correlation by simulations through the same estimator on the real features
(:mod:`emprobe.analysis.priors.calibration`), against a SESOI declared before looking. The target's split-half
reliability across reference pairs (Spearman–Brown, bootstrap CI over questions) gates "not supported": its
lower bound's ceiling must reach the SESOI.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from emprobe.analysis.priors.calibration import calibrate, statistic
from emprobe.analysis.priors.inputs import (
    feature_stores,
    load_target,
    pair_table,
    per_question,
    question_categories,
    question_features,
)
from emprobe.analysis.priors.loqo import (
    loqo_ridge_operator,
    operator_scores,
    random_feature_rhos,
)
from emprobe.analysis.priors.external_result import ExternalPriorsResult
from emprobe.analysis.priors.result import PriorsResult
from emprobe.analysis.stats import (
    covariate_null_targets,
    partial_spearman,
    permutation_pvalue,
    spearman,
    split_half_reliability,
)
from emprobe.errors import ConfigError, DataError

__all__ = ["load_target", "priors"]


def priors(features: Any = None, target: Any = None, *, control: Any = None, base_margin: Any = None,
           categories: Any = None, reliability: Any = None, layers: str | Sequence[int] | None = None,
           direction: Any = None, alpha: float = 1.0, sesoi: float | None = None, n_sim: int = 400,
           n_permutations: int | None = None, n_random: int | None = None, seed: int = 0, prompts: Any = None,
           model: Any = None, estimator: str = "ridge", **external: Any) -> PriorsResult | ExternalPriorsResult:
    """Leave-one-question-out prediction of per-question EM from pre-fine-tuning activations, with controls.

    ``features``: ``{name: store}`` or stores / store directories (named by their model's kind);
    ``target``: per-question rise (DataFrame ``[question_id, target(, target_kind, category)]``, a long per-pair
    table with a ``pair`` column, or a file for :func:`load_target`); ``control``: the aligned control's
    per-question change (same forms; makes the EM-specific target the default); ``base_margin``: the base model's
    per-question margin (headroom control); ``categories``: each question's topic (mapping, Series or
    ``[question_id, category]`` table; default: the target table's ``category`` column) — the topic control;
    ``reliability``: a long ``[question_id, pair, value(, control)]`` table of per-pair rises, or a known
    reliability (a number); default: built from ``target`` and ``control`` when they are per-pair tables;
    ``direction``: a :class:`~emprobe.probes.Direction` (or directory) for the single-direction predictor.
    ``sesoi``: the smallest correlation of interest (true ρ beyond the controls, default 0.3), declared before
    looking; ``n_sim``: simulated targets per true ρ for the calibration and the power. ``n_permutations``
    defaults to 1000 and ``n_random`` to 50.

    With ``prompts`` (one prompt per question id) the target is a per-question score measured elsewhere
    (``FILE[:score]``, see :func:`~emprobe.analysis.priors.external.external_priors`, which takes the other
    options, e.g. ``pca_on``; ``sesoi`` is then the R² margin over the baselines, default 0.05): the prompt
    activations of ``model`` (or the store ``features``) at ``layers`` (default the last) by ``estimator``
    (``ridge`` | ``paper``) against category-only, text-only and random-projection baselines on the same folds
    (200 permutations and 3 random draws by default).
    """
    if prompts is not None:
        from emprobe.analysis.priors.external import external_priors

        if sesoi is not None:
            external["sesoi"] = sesoi
        return external_priors(target, prompts=prompts, model=model, features=features, layers=layers or "-1",
                               estimator=estimator, n_permutations=200 if n_permutations is None else n_permutations,
                               n_random=3 if n_random is None else n_random, seed=seed, **external)
    if external or model is not None:
        raise ConfigError(f"`{next(iter(external), 'model')}` applies to an external target: give `prompts` too")
    sesoi = 0.3 if sesoi is None else sesoi
    if not 0 < sesoi < 1:
        raise ConfigError(f"sesoi must be a correlation in (0, 1), got {sesoi}")
    with threadpool_limits(1):  # many small (n x n) solves: BLAS threads only contend
        return _priors(features, target, control, base_margin, categories, reliability, layers, direction, alpha,
                       sesoi, n_sim, 1000 if n_permutations is None else n_permutations,
                       50 if n_random is None else n_random, seed)


def _priors(features, target, control, base_margin, categories, reliability, layers, direction, alpha, sesoi,
            n_sim, n_permutations, n_random, seed) -> PriorsResult:
    stores = feature_stores(features)
    tgt = load_target(target)
    raw = tgt.groupby("question_id", sort=False).target.mean()
    ctrl, base = per_question(control, "control"), per_question(base_margin, "base_margin")
    cats = question_categories(categories, target)
    cats = question_categories(None, tgt) if cats is None else cats  # a score table's own categories
    if reliability is None:  # per-pair target (and control) tables carry their own reliability
        reliability = pair_table(target, control)
    qids = [q for q in raw.index if all(q in set(s.groups) for s in stores.values())
            and all(x is None or q in x.index for x in (ctrl, base, cats))]
    if len(qids) < 5:
        raise DataError(f"only {len(qids)} questions are in the target, the control/base margin/categories and "
                        "every activation store (need >= 5)")
    y_raw = raw.loc[qids].to_numpy(float)
    targets = {"raw": y_raw} if ctrl is None else {"em_specific": y_raw - ctrl.loc[qids].to_numpy(float), "raw": y_raw}
    b = None if base is None else base.loc[qids].to_numpy(float)
    dummies = None if cats is None else _one_hot(cats.loc[qids].to_numpy())
    feats = {name: question_features(s, layers, qids) for name, s in stores.items()}
    if len(feats) > 1:
        feats["combined"] = np.concatenate(list(feats.values()), axis=1)
    rng = np.random.default_rng(seed)
    perm_idx = np.stack([rng.permutation(len(qids)) for _ in range(n_permutations)]) if n_permutations \
        else np.zeros((0, len(qids)), int)
    ctx = _Ctx(targets, perm_idx, _stack(b, dummies), alpha, n_permutations, seed)
    ops = {(name, c): loqo_ridge_operator(x, ctx.groups, alpha, covariates=ctx.covariates if c else None)
           for name, x in feats.items() for c in ((False, True) if ctx.covariates is not None else (False,))}
    rows = [*_activation_rows(ctx, feats, ops, n_random), *_control_rows(ctx, b, dummies)]
    preds = {"question_id": qids, **{f"target_{k}": v for k, v in targets.items()}}
    preds.update({f"pred_{name}": ops[name, False] @ ctx.y for name in feats})
    if b is not None:
        preds.update(base_margin=b, pred_headroom=loqo_ridge_operator(None, ctx.groups, covariates=b) @ ctx.y)
    if cats is not None:
        preds["category"] = cats.loc[qids].to_numpy()
    if ctrl is not None:
        preds["control_change"] = ctrl.loc[qids].to_numpy(float)
    if direction is not None:
        proj, label = _direction_projection(direction, stores, qids)
        rows += ctx.rows(label, "direction", 1, loqo_ridge_operator(None, ctx.groups, covariates=proj),
                         raw_rho={k: spearman(proj, y) for k, y in targets.items()})
        preds["direction_projection"] = proj
    decision = "combined" if len(stores) > 1 else next(iter(stores))
    observed, cal = _calibrated(ctx, feats[decision], ops[decision, ctx.covariates is not None], sesoi, n_sim, seed)
    effect = cal.effect(observed)
    return PriorsResult(
        table=pd.DataFrame(rows), predictions=pd.DataFrame(preds), n_questions=len(qids),
        target_kind=str(tgt.target_kind.iloc[0]), primary=next(iter(targets)), decision_features=decision,
        reliability=_reliability(reliability, ctrl is not None, seed), sesoi=sesoi,
        effect={"observed": observed, "estimate": effect.estimate, "ci_low": effect.ci_low, "ci_high": effect.ci_high,
                "power": cal.power(sesoi), "detectable_rho": cal.detectable(), "n_sim": n_sim},
        calibration=cal.table(),
        controls=tuple(n for n, v in (("base margin", b), ("category", dummies)) if v is not None),
        control_rise_rho=spearman(targets["raw"], preds["control_change"]) if ctrl is not None else float("nan"),
        meta={"features": {k: str(s.model.get("name")) for k, s in stores.items()}, "layers": str(layers or "all"),
              "alpha": alpha, "n_permutations": n_permutations, "n_random": n_random, "seed": seed,
              "n_categories": int(dummies.shape[1]) if dummies is not None else 0})


def _one_hot(labels: np.ndarray) -> np.ndarray:
    """``[n, n_categories]`` indicators; one category only is a :class:`DataError` (no topic control exists)."""
    values = np.unique(labels)
    if len(values) < 2:
        raise DataError(f"every question is in one category ({values[0]!r}): no topic control can be formed")
    return (labels[:, None] == values[None, :]).astype(float)


def _stack(*parts: np.ndarray | None) -> np.ndarray | None:
    cols = [np.asarray(p, float).reshape(len(p), -1) for p in parts if p is not None]
    return np.concatenate(cols, axis=1) if cols else None


def _calibrated(ctx: _Ctx, x: np.ndarray, w: np.ndarray, sesoi: float, n_sim: int, seed: int):
    """The decisive statistic — the activations' part of the LOQO prediction ``w`` (features ``x`` with the
    controls), beyond the controls' own LOQO fit — and its calibration."""
    w = w - ctx.w_controls
    observed = float(statistic(w, ctx.y, ctx.covariates)[0])
    return observed, calibrate(w, x @ x.T, ctx.y, ctx.covariates, sesoi=sesoi, n_sim=n_sim, seed=seed)


class _Ctx:
    """The shared folds, targets, controls and shuffles every predictor is scored with."""

    def __init__(self, targets: dict[str, np.ndarray], perm_idx: np.ndarray, covariates: np.ndarray | None,
                 alpha: float, n_permutations: int, seed: int) -> None:
        self.targets, self.perm_idx, self.covariates, self.alpha = targets, perm_idx, covariates, alpha
        self.n_permutations, self.seed = n_permutations, seed
        self.y = next(iter(targets.values()))
        self.groups = np.arange(len(self.y))
        #: the controls' own LOQO fit (intercept only without controls): the part of a prediction that is not the
        #: activations'. A held-out question's leave-one-out mean moves against its own value (ρ = −1 for the
        #: intercept alone), so the activations' contribution is measured without it.
        self.w_controls = loqo_ridge_operator(None, self.groups, covariates=covariates)

    def rows(self, features: str, predictor: str, dim: int, w: np.ndarray, raw_rho: dict | None = None,
             random: np.ndarray | None = None) -> list[dict]:
        out = []
        for i, (tname, y) in enumerate(self.targets.items()):
            row = {"target": tname, "features": features, "predictor": predictor, "dim": dim,
                   **operator_scores(w, y, y[self.perm_idx]), "n_permutations": self.n_permutations}
            if raw_rho is not None:
                row["raw_rho"] = raw_rho[tname]
            if random is not None:  # a description only: isotropic features have another LOQO bias
                r = random[:, i]
                row.update(random_rho_mean=float(r.mean()), random_rho_sd=float(r.std(ddof=1)) if len(r) > 1 else 0.0,
                           random_rho_95=float(np.quantile(r, 0.95)))
            if predictor == "activations+controls":
                row.update(self.partial(w, y))
            out.append(row)
        return out

    def partial(self, w: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Partial ρ of the activations' part of the prediction (beyond the controls' fit) with ``y`` given the
        controls; Freedman–Lane p."""
        w = w - self.w_controls
        obs = partial_spearman(w @ y, y, self.covariates)
        null_y = covariate_null_targets(y, self.covariates, self.n_permutations, self.seed + 1)
        null = partial_spearman(null_y @ w.T, null_y, self.covariates) if len(null_y) else np.zeros(0)
        return {"partial_rho": obs, "partial_p": permutation_pvalue(obs, null)}


def _activation_rows(ctx: _Ctx, feats: dict[str, np.ndarray], ops: dict, n_random: int):
    """Rows of every feature set, alone and with the controls (``ops[name, with_controls]``: their operators)."""
    ys = np.stack(list(ctx.targets.values()))
    for name, x in feats.items():
        rand = random_feature_rhos(x.shape, ys, ctx.groups, ctx.alpha, n_random, ctx.seed) if n_random else None
        yield from ctx.rows(name, "activations", x.shape[1], ops[name, False], random=rand)
        if ctx.covariates is not None:
            yield from ctx.rows(name, "activations+controls", x.shape[1] + ctx.covariates.shape[1], ops[name, True])


def _control_rows(ctx: _Ctx, base: np.ndarray | None, dummies: np.ndarray | None) -> list[dict]:
    """The controls alone on the same folds: headroom (base margin), category (topic), and both."""
    out = []
    for label, predictor, cov in (("base margin", "headroom", base), ("category", "category", dummies),
                                  ("base margin + category", "controls",
                                   _stack(base, dummies) if base is not None and dummies is not None else None)):
        if cov is None:
            continue
        raw = {k: spearman(base, y) for k, y in ctx.targets.items()} if predictor == "headroom" else None
        dim = int(np.asarray(cov).reshape(len(ctx.y), -1).shape[1])
        out += ctx.rows(label, predictor, dim, loqo_ridge_operator(None, ctx.groups, covariates=cov), raw_rho=raw)
    return out


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
    """Split-half reliability of the primary target (with its CI) from a per-pair table, or a known figure (a
    number, taken as exact); NaN figures without either."""
    nan = float("nan")
    empty = {"reliability": nan, "split_half_r": nan, "ceiling_rho": nan, "reliability_ci_low": nan,
             "reliability_ci_high": nan, "ceiling_rho_low": nan, "n_questions": 0, "pairs_per_question": 0.0,
             "of": "none (no per-pair table given)"}
    if table is None:
        return empty
    if isinstance(table, (int, float)):
        if not 0 <= table <= 1:
            raise ConfigError(f"reliability must be in [0, 1], got {table}")
        c = float(np.sqrt(table))
        return {**empty, "reliability": float(table), "ceiling_rho": c, "reliability_ci_low": float(table),
                "reliability_ci_high": float(table), "ceiling_rho_low": c, "of": "given (a known figure)"}
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
