"""The numbers behind ``explain``: a leave-one-question-out ridge of the per-question EM-specific rise on
per-question factors, each factor's unique contribution (drop-one ΔR²) with a permutation null and a bootstrap
CI, the category term, and the per-question statistics (CI over pairs, consistency between datasets).

The ridge is :func:`emprobe.analysis.priors.loqo_ridge_operator` (intercept unpenalised, penalty
``alpha * trace(K_train) / n_train``) on standardised factors. The permutation nulls refit it hundreds of
times per factor, so they use :func:`loqo_ridge_batch`, the same estimator in primal form (p factors ≪ n
questions) vectorised over designs; the two agree to rounding (tested).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as _st

from emprobe.analysis.priors import loqo_ridge_operator
from emprobe.analysis.stats import paired_row_spearman, permutation_pvalue, r2_score, spearman


def standardise(x: np.ndarray) -> np.ndarray:
    """Columns z-scored over all questions (constant columns become 0)."""
    x = np.asarray(x, np.float64)
    sd = x.std(0)
    return np.divide(x - x.mean(0), sd, out=np.zeros_like(x), where=sd > 0)


def loqo_predict(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Leave-one-question-out ridge predictions of ``y`` from ``x`` (one row per question; ``x`` may have 0
    columns: then each prediction is the mean of the other questions)."""
    groups = np.arange(len(y))
    return loqo_ridge_operator(x if x.shape[1] else None, groups, alpha) @ y


def loqo_ridge_batch(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``[m, n]`` leave-one-out ridge predictions for ``m`` designs ``x[m, n, p]`` and targets ``y`` (``[n]`` or
    ``[m, n]``): the primal form of :func:`loqo_ridge_operator` with one question per group."""
    x = np.asarray(x, np.float64)
    m, n, p = x.shape
    y = np.broadcast_to(np.asarray(y, np.float64), (m, n))
    out = np.empty((m, n))
    chunk = max(1, int(2e6 // (n * max(p, 1) ** 2)))  # bounds the [chunk, n, p, p] temporaries (~16 MB each)
    for s in range(0, m, chunk):
        xb, yb = x[s:s + chunk], y[s:s + chunk]
        k = n - 1
        sx = xb.sum(1, keepdims=True) - xb                            # [b, n, p] sums without row i
        sy = yb.sum(1, keepdims=True) - yb                            # [b, n]
        xbar, ybar = sx / k, sy / k
        sxx = np.einsum("bjp,bjq->bpq", xb, xb)[:, None] - np.einsum("bip,biq->bipq", xb, xb)
        cxx = sxx - k * np.einsum("bip,biq->bipq", xbar, xbar)
        sxy = np.einsum("bjp,bj->bp", xb, yb)[:, None] - xb * yb[..., None]
        cxy = sxy - k * xbar * ybar[..., None]
        lam = alpha * np.trace(cxx, axis1=-2, axis2=-1) / k + 1e-12
        beta = np.linalg.solve(cxx + lam[..., None, None] * np.eye(p), cxy[..., None])[..., 0]
        out[s:s + chunk] = ybar + ((xb - xbar) * beta).sum(-1)
    return out


def batch_r2(y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Out-of-sample R² of each row of ``preds`` against ``y``."""
    ss = ((y - y.mean()) ** 2).sum()
    return 1.0 - ((preds - y) ** 2).sum(1) / ss if ss > 0 else np.zeros(len(preds))


def _boot_delta(y: np.ndarray, e_full: np.ndarray, e_red: np.ndarray, idx: np.ndarray) -> tuple[float, float]:
    """95% CI of ΔR² = (SSE_reduced − SSE_full) / SST over bootstrap resamples ``idx`` of the questions
    (the LOQO predictions held fixed: each question keeps its out-of-sample errors)."""
    yb = y[idx]
    sst = ((yb - yb.mean(1, keepdims=True)) ** 2).sum(1)
    d = ((e_red[idx] ** 2) - (e_full[idx] ** 2)).sum(1)
    vals = np.divide(d, sst, out=np.zeros(len(d)), where=sst > 0)
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return float(lo), float(hi)


def factor_contributions(x: np.ndarray, names: list[str], y: np.ndarray, *, alpha: float = 1.0,
                         n_permutations: int = 1000, n_boot: int = 2000, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """The full model's LOQO fit (R², ρ, y-permutation null) and one row per factor: drop-one ΔR², its
    permutation null (that factor's column shuffled, model refitted), a bootstrap CI and the marginal ρ."""
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
    boot = rng.integers(0, n, size=(n_boot, n))
    rows = []
    for j, name in enumerate(names):
        red = np.delete(xz, j, axis=1)
        pred_red = loqo_predict(red, y, alpha)
        delta = r2 - r2_score(y, pred_red)
        designs = np.repeat(xz[None], n_permutations, axis=0)
        for b in range(n_permutations):
            designs[b, :, j] = xz[rng.permutation(n), j]
        null_d = batch_r2(y, loqo_ridge_batch(designs, y, alpha)) - (r2 - delta) if n_permutations else np.zeros(0)
        lo, hi = _boot_delta(y, pred - y, pred_red - y, boot)
        rows.append({"factor": name, "delta_r2": delta, "ci_low": lo, "ci_high": hi,
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
    v = values.to_numpy(float)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = _st.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)


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
