"""The paper's claim-2 estimator (arXiv 2606.20814, ``activation_analysis/analysis/within_train.py``), reproduced:

1. PCA fit on the activations of the *training* prompts (the fine-tuning data) or of the evaluation prompts
   (unsupervised, outside the CV, as the paper does);
2. features: the squared projections ("energies") of each evaluation prompt's activation on the first 150 PCs;
3. ``StandardScaler`` + ``Lasso`` (``max_iter`` 200,000, ``tol`` 1e-3), alpha chosen from
   ``(1e-4, 1e-3, 0.01, 0.1, 1, 10)`` by an inner 5-fold CV on R² (``GridSearchCV``);
4. outer 5-fold x 10 repeated CV (``RepeatedKFold``), R² per fold, Nadeau–Bengio corrected CI
   (:func:`~emprobe.analysis.priors.cv.nadeau_bengio`), and a 200-permutation p (the whole procedure on shuffled
   targets, as ``permutation_test_score``; emprobe's statistic is the mean R² over the first repeat's 5 folds, for
   the observed and every shuffled target alike, which keeps the test exact at a tenth of the paper's cost).

The grid search is done with one warm-started, Gram-precomputed ``lasso_path`` per inner fold instead of a refit
per alpha: the same solutions as ``GridSearchCV(Pipeline([StandardScaler(), Lasso()]))``, several times faster.
"""

from __future__ import annotations

import warnings

import numpy as np

from emprobe.analysis.priors.cv import splits
from emprobe.errors import ConfigError

LASSO_ALPHAS = (1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)
N_COMPONENTS = 150


def pc_energies(fit_on: np.ndarray, x: np.ndarray, n_components: int = N_COMPONENTS) -> np.ndarray:
    """``[n, k]`` squared projections of ``x`` (centred on ``fit_on``'s mean) on the first ``k`` principal
    components of ``fit_on``; ``k = min(n_components, rows - 1, dims)``."""
    from sklearn.decomposition import PCA

    fit_on, x = np.asarray(fit_on, np.float64), np.asarray(x, np.float64)
    k = min(n_components, fit_on.shape[0] - 1, fit_on.shape[1])
    if k < 1:
        raise ConfigError(f"PCA needs at least 2 prompts to fit on, got {fit_on.shape[0]}")
    pca = PCA(n_components=k, svd_solver="full").fit(fit_on)
    return ((x - pca.mean_) @ pca.components_.T) ** 2


def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 0, sd, 1.0)
    return [(a - mu) / sd for a in (train, *others)]


def _path(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]) -> np.ndarray:
    """``[p, n_alpha]`` Lasso coefficients (centred ``x`` and ``y``) for ``alphas`` in the order given."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import lasso_path

    order = np.argsort(alphas)[::-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, coefs, _ = lasso_path(x, y, alphas=np.asarray(alphas)[order], max_iter=200_000, tol=1e-3,
                                 precompute=True)
    out = np.empty_like(coefs)
    out[:, order] = coefs
    return out


def _fit_predict(x_tr: np.ndarray, y_tr: np.ndarray, x_te: np.ndarray, alphas: tuple[float, ...]) -> np.ndarray:
    """``[n_test, n_alpha]`` predictions of StandardScaler + Lasso (with intercept) for every alpha."""
    xs_tr, xs_te = _standardise(x_tr, x_te)
    mu = y_tr.mean()
    return mu + xs_te @ _path(xs_tr - xs_tr.mean(0), y_tr - mu, alphas)


def _choose(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...], inner_splits: int, seed: int) -> float:
    """The alpha with the best mean inner-CV R² (``GridSearchCV(cv=KFold(inner_splits, shuffle=True))``)."""
    from sklearn.model_selection import KFold

    r2 = np.zeros(len(alphas))
    for tr, te in KFold(inner_splits, shuffle=True, random_state=seed).split(x):
        pred = _fit_predict(x[tr], y[tr], x[te], alphas)
        ss = ((y[te] - y[te].mean()) ** 2).sum()
        r2 += 1.0 - ((pred - y[te][:, None]) ** 2).sum(0) / (ss if ss > 0 else np.nan)
    return alphas[int(np.nanargmax(r2))]


def _one_column(x: np.ndarray, y: np.ndarray, folds: np.ndarray, base: np.ndarray | None,
                alphas: tuple[float, ...], inner_splits: int, seed: int) -> np.ndarray:
    out = np.empty(folds.shape, float)
    for r, train, test in splits(folds):
        off_tr = 0.0 if base is None else base[r][train]
        off_te = 0.0 if base is None else base[r][test]
        target = y[train] - off_tr
        alpha = _choose(x[train], target, alphas, inner_splits, seed)
        out[r, test] = off_te + _fit_predict(x[train], target, x[test], (alpha,))[:, 0]
    return out


def lasso_cv(features: np.ndarray, y: np.ndarray, folds: np.ndarray, *, alphas: tuple[float, ...] = LASSO_ALPHAS,
             inner_splits: int = 5, offset=None, n_jobs: int = 1, seed: int = 0) -> np.ndarray:
    """Out-of-fold predictions ``[n_repeats, n, m]`` of the paper's StandardScaler + Lasso (alpha tuned per outer
    fold by inner CV) for each column of ``y [n, m]``.

    ``offset``: a function ``offset(y_column) -> [n_repeats, n]`` of out-of-fold base predictions (e.g. the
    category means of each training fold, :func:`~emprobe.analysis.priors.baselines.category_predictions`): the Lasso
    then fits the residual from it, and the prediction is base + Lasso (the nested "beyond category" model).
    ``n_jobs`` > 1 fits the columns in parallel processes.
    """
    x = np.asarray(features, np.float64)
    y = np.asarray(y, np.float64).reshape(len(x), -1)
    folds = np.atleast_2d(folds)

    def column(j: int) -> np.ndarray:
        base = None if offset is None else offset(y[:, j])
        return _one_column(x, y[:, j], folds, base, alphas, inner_splits, seed)

    if n_jobs > 1 and y.shape[1] > 1:
        from joblib import Parallel, delayed

        cols = Parallel(n_jobs=n_jobs)(delayed(column)(j) for j in range(y.shape[1]))
    else:
        cols = [column(j) for j in range(y.shape[1])]
    return np.stack(cols, axis=-1)
