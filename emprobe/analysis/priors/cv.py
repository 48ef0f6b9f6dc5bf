"""Repeated k-fold cross-validation shared by every external claim-2 predictor: the folds, the per-fold R²,
the Nadeau–Bengio corrected interval, and a kernel ridge whose penalty is tuned by exact leave-one-out.

Folds are given as an ``[n_repeats, n]`` integer array (the test-fold id of every row in every repeat), made by
scikit-learn's ``RepeatedKFold`` so a direct scikit-learn computation with the same ``random_state`` sees the
same splits. Predictions are ``[n_repeats, n(, m)]``: out-of-fold predictions of every row under each repeat,
for ``m`` targets at once (the observed target and its permutations share every fit).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from emprobe.analysis.stats.verdict import Effect
from emprobe.errors import ConfigError

RIDGE_ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)  # scale-free: multiples of trace(K_train) / n_train


def repeated_folds(n: int, n_splits: int = 5, n_repeats: int = 10, seed: int = 0) -> np.ndarray:
    """``[n_repeats, n]`` test-fold ids, exactly scikit-learn's ``RepeatedKFold(n_splits, n_repeats,
    random_state=seed)``."""
    from sklearn.model_selection import RepeatedKFold

    if n < 2 * n_splits:
        raise ConfigError(f"{n} rows are too few for {n_splits}-fold cross-validation (need >= {2 * n_splits})")
    out = np.empty((n_repeats, n), int)
    for i, (_, test) in enumerate(RepeatedKFold(n_splits=n_splits, n_repeats=n_repeats,
                                                random_state=seed).split(np.zeros(n))):
        out[i // n_splits, test] = i % n_splits
    return out


def splits(folds: np.ndarray):
    """``(repeat, train_idx, test_idx)`` for every fold of every repeat."""
    for r, row in enumerate(np.atleast_2d(folds)):
        for f in np.unique(row):
            yield r, np.flatnonzero(row != f), np.flatnonzero(row == f)


def fold_r2(y: np.ndarray, pred: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """R² on every test fold (scikit-learn's ``r2_score`` per fold): ``[n_repeats * n_splits]`` for a 1-D
    target, ``[n_repeats * n_splits, m]`` for predictions of ``m`` targets ``y [n, m]``."""
    y = np.asarray(y, float)
    pred = np.asarray(pred, float)
    out = []
    for r, _, test in splits(folds):
        yt, pt = y[test], pred[r][test]
        ss_tot = ((yt - yt.mean(0)) ** 2).sum(0)
        out.append(1.0 - ((yt - pt) ** 2).sum(0) / np.where(ss_tot > 0, ss_tot, np.nan))
    return np.array(out)


def nadeau_bengio(scores: np.ndarray, n_splits: int, level: float = 0.95) -> Effect:
    """Mean of repeated-CV fold scores with the Nadeau–Bengio corrected t-interval: the variance of the mean is
    ``var(scores) * (1/J + n_test/n_train)`` (``J`` folds in all, ``n_test/n_train = 1/(k-1)``), since the
    folds' training sets overlap and their scores are correlated."""
    s = np.asarray(scores, float)
    s = s[np.isfinite(s)]
    if len(s) < 2:
        return Effect(float(s.mean()) if len(s) else float("nan"), float("nan"), float("nan"), level)
    se = float(np.sqrt(s.var(ddof=1) * (1 / len(s) + 1 / (n_splits - 1))))
    half = float(_st.t.ppf(0.5 + level / 2, len(s) - 1)) * se
    return Effect(float(s.mean()), float(s.mean() - half), float(s.mean() + half), level)


def _eigen(kernel: np.ndarray | None, z: np.ndarray, train: np.ndarray, x: np.ndarray | None = None) -> dict:
    """The pieces of ``y ~ z (unpenalised) + kernel ridge`` on ``train``: projection on ``z`` and the eigenpairs of
    the residualised kernel (from the thin SVD of the residualised features when ``x`` is given: cheaper when
    there are fewer features than rows), with its scale ``trace / n``."""
    proj = np.linalg.pinv(z[train])
    out = {"proj": proj, "hat_z": z[train] @ proj}
    if kernel is None and x is None:
        return out
    resid = np.eye(len(train)) - out["hat_z"]
    if x is not None:
        u, sv, vt = np.linalg.svd(resid @ x[train], full_matrices=False)
        evals, out["vs"] = sv ** 2, vt.T * sv
    else:
        out["k_tr"] = kernel[np.ix_(train, train)]
        k_res = resid @ out["k_tr"] @ resid
        evals, u = np.linalg.eigh((k_res + k_res.T) / 2)
    evals = np.clip(evals, 0.0, None)
    out.update(resid=resid, evals=evals, u=u, scale=max(float(evals.sum()) / len(train), 1e-12))
    return out


def _shrink(e: dict, alphas: tuple[float, ...]) -> np.ndarray:
    """``[n_alpha, n_train]`` eigenvalue shrinkage factors ``λ / (λ + α·scale)``."""
    return e["evals"][None, :] / (e["evals"][None, :] + np.asarray(alphas)[:, None] * e["scale"])


def _loo_choice(e: dict, y: np.ndarray, alphas: tuple[float, ...]) -> np.ndarray:
    """Per column of ``y [n_train, m]``, the alpha with the lowest exact leave-one-out error (the fit is a
    linear smoother ``H y``: LOO residual = ``(y − H y) / (1 − H_ii)``, as scikit-learn's ``RidgeCV``)."""
    shrink = _shrink(e, alphas)
    uty = e["u"].T @ (e["resid"] @ y)  # [n, m]
    fit = e["hat_z"] @ y
    sse = np.empty((len(alphas), y.shape[1]))
    for k in range(len(alphas)):
        h_ii = np.diag(e["hat_z"]) + (e["u"] ** 2) @ shrink[k]
        pred = fit + e["u"] @ (shrink[k][:, None] * uty)
        sse[k] = (((y - pred) / np.clip(1.0 - h_ii, 1e-9, None)[:, None]) ** 2).sum(0)
    return sse.argmin(0)


def _predict(kernel, z, y, train, test, e: dict, alphas: tuple[float, ...], x: np.ndarray | None = None
             ) -> np.ndarray:
    """Test predictions ``[n_test, m, n_alpha]``."""
    base = z[test] @ (e["proj"] @ y[train])
    if "u" not in e:
        return np.repeat(base[..., None], len(alphas), axis=-1)
    if x is not None:  # K_st R U = (x_test − z_test P x_train) V S
        ku = (x[test] - z[test] @ e["proj"] @ x[train]) @ e["vs"]
    else:
        k_st = (kernel[np.ix_(test, train)] - z[test] @ e["proj"] @ e["k_tr"]) @ e["resid"]
        ku = k_st @ e["u"]
    uty = e["u"].T @ (e["resid"] @ y[train])
    inv = 1.0 / (e["evals"][None, :] + np.asarray(alphas)[:, None] * e["scale"])
    return np.stack([base + ku @ (inv[k][:, None] * uty) for k in range(len(alphas))], axis=-1)


def kernel_ridge_cv(kernel: np.ndarray | None, y: np.ndarray, folds: np.ndarray, *,
                    alphas: tuple[float, ...] = RIDGE_ALPHAS, covariates: np.ndarray | None = None,
                    features: np.ndarray | None = None) -> np.ndarray:
    """Out-of-fold predictions ``[n_repeats, n, m]`` of kernel ridge (linear kernel ``K = X X^T``, or the features
    ``X`` themselves) for each column of ``y [n, m]``, its penalty chosen per fold and column from ``alphas``
    (scale-free: multiples of ``trace(K_train) / n_train``) by exact leave-one-out on the training rows;
    ``covariates`` (e.g. a category one-hot) enter unpenalised with the intercept."""
    y = np.asarray(y, float).reshape(len(y), -1)
    z = np.ones((len(y), 1)) if covariates is None else np.c_[np.ones(len(y)), covariates]
    x = None if features is None else np.asarray(features, float)
    if x is not None and x.shape[1] >= 0.8 * len(y):  # wide: the n x n kernel is cheaper
        kernel, x = x @ x.T, None
    out = np.empty((len(np.atleast_2d(folds)), len(y), y.shape[1]))
    for r, train, test in splits(folds):
        e = _eigen(kernel, z, train, x)
        best = _loo_choice(e, y[train], alphas) if "u" in e and len(alphas) > 1 else np.zeros(y.shape[1], int)
        pred = _predict(kernel, z, y, train, test, e, alphas, x)
        out[r, test] = np.take_along_axis(pred, best[None, :, None], axis=2)[..., 0]
    return out
