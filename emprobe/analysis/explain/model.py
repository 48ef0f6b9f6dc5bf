"""The numbers behind ``explain``: a leave-one-question-out ridge of the per-question EM-specific rise on
per-question factors, each factor's unique contribution (drop-one ΔR²) with a permutation null and a bootstrap
CI, the category term, and the per-question statistics (CI over pairs, consistency between datasets).

The ridge is :func:`emprobe.analysis.priors.loqo.loqo_ridge_operator` (intercept unpenalised, penalty
``alpha * trace(K_train) / n_train``) on standardised factors. The permutation nulls refit it hundreds of
times per factor and the bootstrap refits it on every resample, so they use :func:`loqo_ridge_batch`, the same
estimator in primal form (p factors ≪ n questions) vectorised over designs, with bootstrap copies of a question
held out together; the two agree to rounding (tested). A factor that carries nothing costs out-of-sample R², so
its ΔR² sits slightly below 0.
"""

from __future__ import annotations

import einops
import numpy as np
import pandas as pd

from emprobe.analysis.priors.loqo import loqo_ridge_operator
from emprobe.analysis.stats import (
    paired_row_spearman,
    permutation_pvalue,
    r2_score,
    spearman,
)


def standardise(x: np.ndarray) -> np.ndarray:
    """Columns z-scored over all questions (constant columns, up to rounding, become 0)."""
    x = np.asarray(x, np.float64)
    sd, mu = x.std(0), x.mean(0)
    return np.divide(x - mu, sd, out=np.zeros_like(x), where=sd > 1e-9 * (1 + np.abs(mu)))


def loqo_predict(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Leave-one-question-out ridge predictions of ``y`` from ``x`` (one row per question; ``x`` may have 0
    columns: then each prediction is the mean of the other questions)."""
    groups = np.arange(len(y))
    return loqo_ridge_operator(x if x.shape[1] else None, groups, alpha) @ y


def loqo_ridge_batch(x: np.ndarray, y: np.ndarray, alpha: float = 1.0, weights: np.ndarray | None = None) -> np.ndarray:
    """``[m, n]`` leave-one-question-out ridge predictions for ``m`` designs ``x[m, n, p]`` (or one ``[n, p]``)
    and targets ``y`` (``[n]`` or ``[m, n]``): the primal form of :func:`loqo_ridge_operator` with one question
    per group. ``weights[m, n]`` are copy counts (a bootstrap resample): each question's copies are held out
    together, exactly as the operator on the expanded rows with question groups."""
    x = np.asarray(x, np.float64)
    m = max(x.shape[0] if x.ndim == 3 else 1, 1 if weights is None else len(weights), len(y) if np.ndim(y) == 2 else 1)
    n, p = x.shape[-2:]
    x = np.broadcast_to(x, (m, n, p))
    y = np.broadcast_to(np.asarray(y, np.float64), (m, n))
    w = np.broadcast_to(np.ones(n) if weights is None else np.asarray(weights, np.float64), (m, n))
    out = np.empty((m, n))
    chunk = max(1, int(2e6 // (n * max(p, 1) ** 2)))  # bounds the [chunk, n, p, p] temporaries (~16 MB each)
    for s in range(0, m, chunk):
        xb, yb, wb = x[s:s + chunk], y[s:s + chunk], w[s:s + chunk]
        k = np.maximum(wb.sum(1, keepdims=True) - wb, 1e-12)           # [b, n] weight without question i
        wx, wy = xb * wb[..., None], yb * wb
        xbar = (wx.sum(1, keepdims=True) - wx) / k[..., None]         # [b, n, p] means without question i
        ybar = (wy.sum(1, keepdims=True) - wy) / k
        if p == 0:
            out[s:s + chunk] = ybar
            continue
        sxx = einops.einsum(wx, xb, "b j p, b j q -> b p q")[:, None] - einops.einsum(wx, xb, "b i p, b i q -> b i p q")
        cxx = sxx - k[..., None, None] * einops.einsum(xbar, xbar, "b i p, b i q -> b i p q")
        sxy = einops.einsum(wx, yb, "b j p, b j -> b p")[:, None] - wx * yb[..., None]
        cxy = sxy - k[..., None] * xbar * ybar[..., None]
        lam = alpha * np.trace(cxx, axis1=-2, axis2=-1) / k + 1e-12
        beta = np.linalg.solve(cxx + lam[..., None, None] * np.eye(p), cxy[..., None])[..., 0]
        out[s:s + chunk] = ybar + ((xb - xbar) * beta).sum(-1)
    return out


def batch_r2(y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Out-of-sample R² of each row of ``preds`` against ``y``."""
    ss = ((y - y.mean()) ** 2).sum()
    return 1.0 - ((preds - y) ** 2).sum(1) / ss if ss > 0 else np.zeros(len(preds))


def weighted_r2(y: np.ndarray, preds: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """R² of each row of ``preds`` against ``y`` with per-question weights (bootstrap copy counts)."""
    ybar = (weights * y).sum(1, keepdims=True) / weights.sum(1, keepdims=True)
    sst = (weights * (y - ybar) ** 2).sum(1)
    return 1.0 - np.divide((weights * (preds - y) ** 2).sum(1), sst, out=np.ones(len(sst)), where=sst > 0)


def bootstrap_weights(n: int, n_boot: int, rng) -> np.ndarray:
    """``[n_boot, n]`` copy counts of each question in a resample of the questions with replacement."""
    idx = rng.integers(0, n, size=(n_boot, n))
    return np.stack([np.bincount(i, minlength=n) for i in idx]).astype(np.float64)


def factor_contributions(x: np.ndarray, names: list[str], y: np.ndarray, *, alpha: float = 1.0,
                         n_permutations: int = 1000, n_boot: int = 1000, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """The full model's LOQO fit (R², ρ, y-permutation null) and one row per factor: drop-one ΔR², its
    permutation null (that factor's column shuffled, model refitted), a bootstrap CI over questions (both
    models refitted on each resample, a question's copies held out together) and the marginal ρ."""
    rng = np.random.default_rng(seed)
    n = len(y)
    xz = standardise(x)
    w = loqo_ridge_operator(xz, np.arange(n), alpha)
    pred = w @ y
    r2 = r2_score(y, pred)
    perms = np.stack([rng.permutation(y) for _ in range(n_permutations)]) if n_permutations else np.zeros((0, n))
    null = batch_r2_rows(perms, perms @ w.T)
    model = {"r2": r2, "rho": spearman(pred, y), "p_permutation": permutation_pvalue(r2, null) if len(null) else
             float("nan"), "null_r2_95": _q95(null), "null_r2_mean": float(null.mean()) if len(null) else float("nan"),
             "prediction": pred}
    wts = bootstrap_weights(n, n_boot, rng)
    full_boot = weighted_r2(y, loqo_ridge_batch(xz, y, alpha, wts), wts)
    rows = []
    for j, name in enumerate(names):
        red = np.delete(xz, j, axis=1)
        delta = r2 - r2_score(y, loqo_predict(red, y, alpha))
        designs = np.repeat(xz[None], n_permutations, axis=0)
        for b in range(n_permutations):
            designs[b, :, j] = xz[rng.permutation(n), j]
        null_d = batch_r2(y, loqo_ridge_batch(designs, y, alpha)) - (r2 - delta) if n_permutations else np.zeros(0)
        boot_d = full_boot - weighted_r2(y, loqo_ridge_batch(red, y, alpha, wts), wts)
        lo, hi = np.quantile(boot_d, [0.025, 0.975]) if n_boot else (float("nan"), float("nan"))
        rows.append({"factor": name, "delta_r2": delta, "ci_low": float(lo), "ci_high": float(hi),
                     "p_permutation": permutation_pvalue(delta, null_d) if len(null_d) else float("nan"),
                     "null_95": _q95(null_d), "rho_marginal": spearman(x[:, j], y)})
    table = pd.DataFrame(rows).sort_values("delta_r2", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(1, "rank", np.arange(1, len(table) + 1))
    return model, table


def batch_r2_rows(ys: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """R² of ``preds[i]`` against its own target ``ys[i]`` (permuted targets)."""
    if not len(ys):
        return np.zeros(0)
    ss = ((ys - ys.mean(1, keepdims=True)) ** 2).sum(1)
    return 1.0 - np.divide(((preds - ys) ** 2).sum(1), ss, out=np.ones(len(ys)), where=ss > 0)


def category_term(x: np.ndarray, categories: np.ndarray, y: np.ndarray, r2_factors: float, *, alpha: float = 1.0,
                  n_permutations: int = 1000, seed: int = 0) -> dict[str, float]:
    """ΔR² of adding the category (one-hot, standardised) to the factor model (LOQO R² ``r2_factors``), against
    shuffled category labels."""
    levels = np.unique(categories)
    if len(levels) < 2:
        return {"category_delta_r2": float("nan"), "category_p": float("nan"), "category_null_95": float("nan"),
                "n_categories": len(levels)}
    xz = standardise(x)

    def design(cats: np.ndarray) -> np.ndarray:
        return np.c_[xz, standardise((cats[:, None] == levels[None]).astype(float))]

    delta = r2_score(y, loqo_predict(design(categories), y, alpha)) - r2_factors
    rng = np.random.default_rng([seed, 0xCA7])
    designs = np.stack([design(categories[rng.permutation(len(y))]) for _ in range(n_permutations)]) \
        if n_permutations else np.zeros((0, len(y), xz.shape[1] + len(levels)))
    null = batch_r2(y, loqo_ridge_batch(designs, y, alpha)) - r2_factors if n_permutations else np.zeros(0)
    return {"category_delta_r2": delta, "category_p": permutation_pvalue(delta, null) if len(null) else float("nan"),
            "category_null_95": _q95(null), "n_categories": len(levels)}


def model_fit(x: np.ndarray, y: np.ndarray, *, alpha: float = 1.0, n_permutations: int = 1000,
              seed: int = 0) -> dict[str, float]:
    """LOQO R² and ρ of the full factor model with its y-permutation p (one target, e.g. one dataset's)."""
    xz = standardise(x)
    w = loqo_ridge_operator(xz, np.arange(len(y)), alpha)
    pred = w @ y
    r2 = r2_score(y, pred)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(y) for _ in range(n_permutations)]) if n_permutations else np.zeros((0, len(y)))
    null = batch_r2_rows(perms, perms @ w.T)
    return {"r2": r2, "rho": spearman(pred, y), "p_permutation": permutation_pvalue(r2, null) if len(null) else
            float("nan"), "null_r2_95": _q95(null)}


def _q95(null: np.ndarray) -> float:
    return float(np.quantile(null, 0.95)) if len(null) else float("nan")


# ---- per-question statistics ------------------------------------------------------------------------
def pair_ci(values: pd.Series, level: float = 0.95) -> tuple[float, float]:
    """t-interval of a question's mean over its pairs (NaN with one pair)."""
    from emprobe.analysis.stats import t_interval

    return t_interval(values.to_numpy(float), level)


def rho_with_ci(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, n_permutations: int = 1000,
                seed: int = 0) -> dict[str, float]:
    """Spearman ρ of ``a`` and ``b`` with a 95% bootstrap CI over questions and a one-sided permutation p."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    rng = np.random.default_rng(seed)
    rho = spearman(a, b)
    idx = rng.integers(0, len(a), size=(n_boot, len(a)))
    boots = paired_row_spearman(a[idx], b[idx])
    null = paired_row_spearman(a, np.stack([rng.permutation(b) for _ in range(n_permutations)])) \
        if n_permutations else np.zeros(0)
    lo, hi = np.quantile(boots, [0.025, 0.975])
    return {"rho": rho, "ci_low": float(lo), "ci_high": float(hi),
            "p_permutation": permutation_pvalue(rho, null) if len(null) else float("nan")}
