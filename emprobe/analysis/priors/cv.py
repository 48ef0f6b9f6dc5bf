"""Repeated k-fold cross-validation shared by every external claim-2 predictor: the folds, the per-fold R²,
the Nadeau–Bengio corrected interval, and a kernel ridge whose penalty is tuned in an inner CV.

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


def _fold_fit(kernel: np.ndarray | None, z: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray,
              alphas: tuple[float, ...]) -> np.ndarray:
    """Ridge predictions ``[n_test, m, n_alpha]`` of ``y ~ z (unpenalised) + kernel ridge``, fit on ``train``."""
    proj = np.linalg.pinv(z[train])
    base = z[test] @ (proj @ y[train])
    if kernel is None:
        return np.repeat(base[..., None], len(alphas), axis=-1)
    resid = np.eye(len(train)) - z[train] @ proj
    k_tr = kernel[np.ix_(train, train)]
    k_res = resid @ k_tr @ resid
    k_st = (kernel[np.ix_(test, train)] - z[test] @ proj @ k_tr) @ resid
    evals, u = np.linalg.eigh((k_res + k_res.T) / 2)
    evals = np.clip(evals, 0.0, None)
    uty = u.T @ (resid @ y[train])
    ku = k_st @ u
    scale = max(float(evals.sum()) / len(train), 1e-12)
    return np.stack([base + ku @ (uty / (evals + a * scale)[:, None]) for a in alphas], axis=-1)


def kernel_ridge_cv(kernel: np.ndarray | None, y: np.ndarray, folds: np.ndarray, *,
                    alphas: tuple[float, ...] = RIDGE_ALPHAS, covariates: np.ndarray | None = None,
                    inner_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions ``[n_repeats, n, m]`` of kernel ridge (linear kernel ``K = X X^T``) for each
    column of ``y [n, m]``, its penalty chosen per fold and column from ``alphas`` by an inner ``inner_splits``-fold
    CV on the training rows; ``covariates`` (e.g. a category one-hot) enter unpenalised with the intercept."""
    y = np.asarray(y, float).reshape(len(y), -1)
    z = np.ones((len(y), 1)) if covariates is None else np.c_[np.ones(len(y)), covariates]
    out = np.empty((len(np.atleast_2d(folds)), len(y), y.shape[1]))
    for r, train, test in splits(folds):
        best = _inner_choice(kernel, z, y, train, alphas, inner_splits, seed) if len(alphas) > 1 else \
            np.zeros(y.shape[1], int)
        pred = _fold_fit(kernel, z, y, train, test, alphas)
        out[r, test] = np.take_along_axis(pred, best[None, :, None], axis=2)[..., 0]
    return out


def _inner_choice(kernel, z, y, train, alphas, inner_splits, seed) -> np.ndarray:
    """Per column, the index of the alpha with the lowest inner-CV squared error on ``train``."""
    from sklearn.model_selection import KFold

    sse = np.zeros((y.shape[1], len(alphas)))
    for itr, ite in KFold(inner_splits, shuffle=True, random_state=seed).split(train):
        pred = _fold_fit(kernel, z, y, train[itr], train[ite], alphas)
        sse += ((pred - y[train[ite]][..., None]) ** 2).sum(0)
    return sse.argmin(1)
