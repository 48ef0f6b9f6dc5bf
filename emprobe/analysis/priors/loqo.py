"""Priors → per-question EM (paper §2): predict post-fine-tuning misalignment from pre-fine-tuning activations.

Features are prompt-only activations of a model *before* fine-tuning (one row per question or paraphrase);
the target is a per-question alignment score *after* fine-tuning. Predictions are leave-one-question-out
(every paraphrase of a question is held out together), scored by Spearman ρ and out-of-sample R², with a
permutation p-value and two controls: random features of the same shape, and a single-direction predictor
(the projection on a base-model misalignment direction). Predictors with unpenalised covariates (the base
margin, i.e. headroom) share the same folds through :func:`loqo_ridge_operator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from emprobe.analysis.stats import (
    paired_row_spearman,
    permutation_pvalue,
    r2_score,
    spearman,
)
from emprobe.errors import ConfigError


def _check(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> None:
    if x.ndim != 2 or len(x) != len(y) or len(y) != len(groups):
        raise ConfigError(f"features {x.shape}, target {y.shape} and groups {groups.shape} do not line up")
    if len(np.unique(groups)) < 3:
        raise ConfigError("need at least 3 questions for leave-one-question-out prediction")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError("NaN or inf in features or target")


def _design(covariates: np.ndarray | None, n: int) -> np.ndarray:
    """``[n, 1 + c]``: an intercept column plus the unpenalised covariates."""
    if covariates is None:
        return np.ones((n, 1))
    return np.c_[np.ones(n), np.asarray(covariates, np.float64).reshape(n, -1)]


def loqo_ridge_operator(x: np.ndarray | None, groups: np.ndarray, alpha: float = 1.0,
                        covariates: np.ndarray | None = None) -> np.ndarray:
    """The ``[n, n]`` matrix W with ``pred = W @ y`` for leave-one-group-out kernel ridge.

    For each held-out group the model is ``y ~ intercept + covariates (unpenalised) + x (ridge)``, fitted on
    the other groups: features and target are residualised on the intercept and covariates of the training
    rows, and the ridge penalty is ``alpha * trace(K_train) / n_train`` (scale-free). ``x=None`` is the
    plain least-squares fit on the covariates. Because the prediction is linear in ``y``, a permutation
    test needs one matrix product per shuffle instead of a refit.
    """
    kernel = None
    if x is not None and np.asarray(x).shape[1]:
        x = np.asarray(x, np.float64)
        kernel = x @ x.T
    return loqo_kernel_operator(kernel, groups, alpha, covariates)


def loqo_kernel_operator(kernel: np.ndarray | None, groups: np.ndarray, alpha: float = 1.0,
                         covariates: np.ndarray | None = None) -> np.ndarray:
    """:func:`loqo_ridge_operator` from the linear kernel ``K = X X^T`` alone (every fold is ``n x n`` work,
    whatever the feature dimension)."""
    groups = np.asarray(groups)
    n = len(groups)
    z = _design(covariates, n)
    w = np.zeros((n, n))
    for g in np.unique(groups):
        test, train = np.flatnonzero(groups == g), np.flatnonzero(groups != g)
        proj = np.linalg.pinv(z[train])  # [c, n_train]: least squares on the covariates
        op = z[test] @ proj
        if kernel is not None:
            resid = np.eye(len(train)) - z[train] @ proj
            k_tr = kernel[np.ix_(train, train)]
            k_tt = resid @ k_tr @ resid  # kernel of the residualised training features
            k_st = (kernel[np.ix_(test, train)] - z[test] @ proj @ k_tr) @ resid
            lam = alpha * np.trace(k_tt) / len(train) + 1e-12
            op = op + k_st @ np.linalg.solve(k_tt + lam * np.eye(len(train)), resid)
        w[np.ix_(test, train)] = op
    return w


@dataclass
class LoqoPrediction:
    """Leave-one-question-out prediction of a per-question target."""

    method: str
    rho: float
    r2: float
    p_value: float
    n_permutations: int
    predictions: np.ndarray = field(repr=False)
    null_rho: np.ndarray = field(repr=False)

    def summary(self) -> dict:
        return {"method": self.method, "spearman_rho": self.rho, "r2": self.r2, "p_permutation": self.p_value,
                "n_permutations": self.n_permutations,
                "null_rho_95": float(np.quantile(self.null_rho, 0.95)) if len(self.null_rho) else float("nan")}


def loqo_ridge(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, alpha: float = 1.0,
               n_permutations: int = 1000, seed: int = 0) -> LoqoPrediction:
    """Leave-one-question-out ridge prediction with a label-permutation p-value (one-sided, ρ > 0)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    _check(x, y, groups)
    w = loqo_ridge_operator(x, groups, alpha)
    pred = w @ y
    rho = spearman(pred, y)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(y) for _ in range(n_permutations)]) if n_permutations else np.zeros((0, len(y)))
    # each permuted target is compared with the predictions made from it
    null = paired_row_spearman(perms @ w.T, perms) if n_permutations else np.zeros(0)
    return LoqoPrediction("ridge", rho, r2_score(y, pred), permutation_pvalue(rho, null), n_permutations, pred, null)


def loqo_pls(x: np.ndarray, y: np.ndarray, groups: np.ndarray | None = None, n_components: int = 2,
             n_permutations: int = 200, seed: int = 0) -> LoqoPrediction:
    """Leave-one-question-out PLS regression (refit per permutation, so fewer shuffles by default)."""
    from sklearn.cross_decomposition import PLSRegression

    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    _check(x, y, groups)
    nc = max(1, min(n_components, len(np.unique(groups)) - 2, x.shape[1]))

    def predict(target: np.ndarray) -> np.ndarray:
        out = np.zeros_like(target)
        for g in np.unique(groups):
            te, tr = groups == g, groups != g
            out[te] = PLSRegression(nc, scale=False).fit(x[tr], target[tr]).predict(x[te]).ravel()
        return out

    pred = predict(y)
    rho = spearman(pred, y)
    rng = np.random.default_rng(seed)
    null = np.array([spearman(predict(t), t) for t in (rng.permutation(y) for _ in range(n_permutations))])
    return LoqoPrediction("pls", rho, r2_score(y, pred), permutation_pvalue(rho, null), n_permutations, pred, null)


def random_feature_control(shape: tuple[int, int], y: np.ndarray, groups: np.ndarray | None = None,
                           alpha: float = 1.0, n_seeds: int = 50, seed: int = 0) -> dict[str, float]:
    """ρ of the same ridge on Gaussian random features of the same shape, over ``n_seeds`` draws."""
    y = np.asarray(y, np.float64)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    rhos = random_feature_rhos(shape, y, groups, alpha, n_seeds, seed)[:, 0]
    return {"random_rho_mean": float(rhos.mean()), "random_rho_sd": float(rhos.std(ddof=1)),
            "random_rho_95": float(np.quantile(rhos, 0.95)), "n_seeds": n_seeds}


def single_direction_predictor(projection: np.ndarray, y: np.ndarray, n_permutations: int = 1000,
                               seed: int = 0) -> dict[str, float]:
    """Spearman ρ between each question's projection on a direction and its target, with permutation p."""
    projection, y = np.asarray(projection, np.float64), np.asarray(y, np.float64)
    rho = spearman(projection, y)
    rng = np.random.default_rng(seed)
    null = np.array([spearman(projection, rng.permutation(y)) for _ in range(n_permutations)])
    return {"spearman_rho": rho, "p_permutation": permutation_pvalue(rho, null), "n_permutations": n_permutations}


def operator_scores(w: np.ndarray, y: np.ndarray, null_targets: np.ndarray) -> dict[str, float]:
    """ρ and R² of the LOQO prediction ``w @ y``, against the same operator on ``null_targets`` (``[n_perm, n]``,
    e.g. shuffled targets): the null's mean shows the estimator's own bias, its p is one-sided."""
    pred = w @ y
    rho = spearman(pred, y)
    null = paired_row_spearman(null_targets @ w.T, null_targets) if len(null_targets) else np.zeros(0)
    return {"spearman_rho": rho, "r2": r2_score(y, pred), "p_permutation": permutation_pvalue(rho, null),
            "null_rho_mean": float(null.mean()) if len(null) else float("nan"),
            "null_rho_95": float(np.quantile(null, 0.95)) if len(null) else float("nan")}


def random_feature_rhos(shape: tuple[int, int], ys: np.ndarray, groups: np.ndarray, alpha: float = 1.0,
                        n_draws: int = 50, seed: int = 0) -> np.ndarray:
    """``[n_draws, n_targets]``: ρ of the same LOQO ridge on Gaussian random features of ``shape`` for each
    row of ``ys`` (one operator per draw, shared by the targets)."""
    rng = np.random.default_rng([seed, 0xF0A7])
    ys = np.atleast_2d(np.asarray(ys, np.float64))
    out = np.zeros((n_draws, len(ys)))
    for i in range(n_draws):
        x = rng.standard_normal(shape)
        w = loqo_kernel_operator(x @ x.T, groups, alpha)
        out[i] = paired_row_spearman(ys @ w.T, ys)
    return out
