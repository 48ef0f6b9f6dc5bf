"""Statistics shared by the analyses: rank correlation with permutation p, bootstrap CIs, AUROC."""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from emprobe.errors import ConfigError
from emprobe.probes.estimators import auroc  # noqa: F401  (the one AUROC, defined in probes; re-exported here)


def _finite(*arrays: np.ndarray) -> None:
    for a in arrays:
        if not np.all(np.isfinite(a)):
            raise ConfigError("NaN or inf in the analysis input")


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman rank correlation (NaN-free inputs; returns 0.0 for a constant input)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    _finite(x, y)
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(_st.spearmanr(x, y).statistic)


def paired_row_spearman(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman ρ of ``a[i]`` with ``b[i]`` for every row ``i`` (vectorised; 0.0 for a constant row);
    a 1-D ``a`` is paired with every row of ``b``."""
    b = np.atleast_2d(np.asarray(b, float))
    a = np.broadcast_to(np.atleast_2d(np.asarray(a, float)), b.shape)
    ra, rb = _st.rankdata(a, axis=1), _st.rankdata(b, axis=1)
    ra = ra - ra.mean(1, keepdims=True)
    rb = rb - rb.mean(1, keepdims=True)
    den = np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1)
    return np.divide((ra * rb).sum(1), den, out=np.zeros(len(ra)), where=den > 0)


def r2_score(y: np.ndarray, pred: np.ndarray) -> float:
    """Out-of-sample R² = 1 − SS_res / SS_tot (can be negative)."""
    y, pred = np.asarray(y, float), np.asarray(pred, float)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else 0.0


def permutation_pvalue(observed: float, null: np.ndarray, alternative: str = "greater") -> float:
    """(1 + #{null ≥ observed}) / (1 + n): the add-one permutation p-value."""
    null = np.asarray(null, float)
    if alternative == "greater":
        hits = np.sum(null >= observed)
    elif alternative == "two-sided":
        hits = np.sum(np.abs(null) >= abs(observed))
    else:
        raise ConfigError(f"unknown alternative {alternative!r}")
    return float((1 + hits) / (1 + len(null)))


def bootstrap_ci(values: np.ndarray, stat=np.mean, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of ``stat`` over the first axis of ``values``."""
    values = np.asarray(values, float)
    if len(values) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(values), size=(n_boot, len(values)))
    boots = np.array([stat(values[i]) for i in idx])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def zscore_vs_null(observed: float, null: np.ndarray) -> float:
    """How many null standard deviations ``observed`` lies above the null mean."""
    null = np.asarray(null, float)
    sd = null.std(ddof=1) if len(null) > 1 else 0.0
    return float((observed - null.mean()) / sd) if sd > 0 else float("inf") * np.sign(observed - null.mean())


def sign_flip_pvalue(x: np.ndarray, n: int = 1000, seed: int = 0) -> float:
    """Two-sided sign-flip permutation p-value of ``mean(x) != 0`` (paired differences, e.g. per question)."""
    x = np.asarray(x, float)
    _finite(x)
    rng = np.random.default_rng(seed)
    obs = abs(x.mean())
    null = np.abs((rng.choice([-1.0, 1.0], size=(n, len(x))) * x).mean(1))
    return float((1 + (null >= obs - 1e-15).sum()) / (n + 1))


# ---- reliability and partial correlation (priors / study) -------------------------------------------
def split_half_reliability(table, n_splits: int = 200, seed: int = 0, value: str | None = None,
                           n_boot: int = 1000, level: float = 0.95) -> dict[str, float]:
    """Split-half reliability of a per-question mean over its items, Spearman–Brown corrected, with a bootstrap
    CI over questions.

    ``table``: a long DataFrame with ``question_id``, ``pair`` and one value column (``value``; by default
    the only numeric column besides those). Each split puts a random half of every question's pairs on
    each side; the split-half r is the Pearson correlation of the two half-means across questions, averaged
    over ``n_splits`` splits, and ``reliability = 2 r / (1 + r)`` (Spearman–Brown; with an odd number of pairs
    the halves differ in size, and the same true-score model is solved for halves of ``h`` and ``m - h``
    pairs, which reduces to Spearman–Brown for equal halves). ``ceiling_rho = sqrt(reliability)`` bounds
    how well any predictor can correlate with the (noisy) per-question target. The CI (``reliability_ci_low``,
    ``reliability_ci_high``; percentile, ``n_boot`` resamples of the questions, each averaging the first 25
    splits) is what a gate should use: at 30 questions the point estimate's SE is near 0.17; ``ceiling_rho_low``
    is the ceiling at its lower end. Questions with fewer than two pairs are skipped; with fewer than 3
    splittable questions the figures are NaN.
    """
    vals = _items_per_question(table, value)
    nan = float("nan")
    out = {"reliability": nan, "split_half_r": nan, "ceiling_rho": nan, "reliability_ci_low": nan,
           "reliability_ci_high": nan, "ceiling_rho_low": nan, "n_questions": len(vals),
           "pairs_per_question": float(np.median([len(v) for v in vals])) if vals else 0.0, "n_splits": n_splits}
    if len(vals) < 3:
        return out
    _finite(*vals)
    rng = np.random.default_rng(seed)
    halves = np.zeros((2, len(vals), n_splits))
    for i, v in enumerate(vals):
        order = rng.random((n_splits, len(v))).argsort(1)
        h = len(v) // 2
        halves[0, i], halves[1, i] = v[order[:, :h]].mean(1), v[order[:, h:]].mean(1)
    m = int(np.median([len(v) for v in vals]))
    r = float(_half_r(halves, np.arange(len(vals))[None])[0])
    rel = spearman_brown(r, m // 2, m - m // 2)
    out.update(reliability=rel, split_half_r=r, ceiling_rho=float(np.sqrt(max(rel, 0.0))))
    if n_boot:
        idx = rng.integers(0, len(vals), (n_boot, len(vals)))
        few = halves[:, :, :25]  # the bootstrap averages over fewer splits (their mean varies little)
        boots = np.concatenate([_half_r(few, idx[i:i + 100]) for i in range(0, n_boot, 100)])
        rels = np.array([spearman_brown(b, m // 2, m - m // 2) for b in boots])
        lo, hi = np.nanquantile(rels, [(1 - level) / 2, 1 - (1 - level) / 2])
        out.update(reliability_ci_low=float(lo), reliability_ci_high=float(hi),
                   ceiling_rho_low=float(np.sqrt(max(lo, 0.0))))
    return out


def _items_per_question(table, value: str | None) -> list[np.ndarray]:
    """Every question's item values (questions with >= 2 items), from a long ``question_id, pair, value`` table."""
    df = table
    if value is None:
        cand = [c for c in df.columns if c not in ("question_id", "pair") and np.issubdtype(df[c].dtype, np.number)]
        if len(cand) != 1:
            raise ConfigError(f"split_half_reliability: name the value column (numeric columns: {cand})")
        value = cand[0]
    missing = {"question_id", "pair", value} - set(df.columns)
    if missing:
        raise ConfigError(f"reliability table lacks columns {sorted(missing)}")
    vals = [g[value].to_numpy(float) for _, g in df.groupby("question_id", sort=True)]
    return [v for v in vals if len(v) >= 2]


def _half_r(halves: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[len(idx)]``: the split-half r averaged over splits, for each row of question indices ``idx``."""
    a, b = halves[0][idx], halves[1][idx]  # [B, n_q, n_splits]
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a ** 2).sum(1) * (b ** 2).sum(1))
    return np.divide((a * b).sum(1), den, out=np.zeros(den.shape), where=den > 0).mean(1)


def spearman_brown(r: float, h1: int, h2: int) -> float:
    """Reliability of the mean of ``h1 + h2`` items from the correlation ``r`` of two half-means of ``h1`` and
    ``h2`` items (true score + independent item noise): solves ``r² (1 + λ/h1)(1 + λ/h2) = 1`` for the noise
    ratio λ; equals ``2 r / (1 + r)`` when ``h1 == h2``. A reliability is a share of variance, so ``r ≤ 0`` (no
    true-score variance detected) gives 0, not the formula's impossible negative values."""
    if not np.isfinite(r):
        return float("nan")
    if r <= 0:
        return 0.0
    if h1 == h2:
        return float(2 * r / (1 + r))
    if r >= 1:
        return 1.0
    a, b, c = r * r / (h1 * h2), r * r * (1 / h1 + 1 / h2), r * r - 1
    lam = (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)
    return float(1 / (1 + lam / (h1 + h2)))


def partial_spearman(x: np.ndarray, y: np.ndarray, covariate: np.ndarray) -> np.ndarray | float:
    """Rank partial correlation of ``x`` and ``y`` given ``covariate`` (``[n]`` or ``[n, c]``: e.g. a base margin
    and category indicators): the Pearson correlation of their ranks after regressing the covariates' ranks out
    of each (ranking an indicator column is an affine map of it, so indicators enter as they are).
    ``x``/``y`` may be ``[n_rows, n]`` (row-wise)."""
    one = np.ndim(x) == 1 and np.ndim(y) == 1
    x, y = np.atleast_2d(np.asarray(x, float)), np.atleast_2d(np.asarray(y, float))
    x, y = np.broadcast_arrays(x, y)
    z = np.asarray(covariate, float)
    z = _st.rankdata(z.reshape(len(z), -1), axis=0)
    u, sv, _ = np.linalg.svd(z - z.mean(0), full_matrices=False)
    u = u[:, sv > 1e-9 * max(sv.max(), 1e-300)]  # orthonormal basis of the covariates (collinear ones dropped)

    def resid(a: np.ndarray) -> np.ndarray:
        r = _st.rankdata(a, axis=1)
        r = r - r.mean(1, keepdims=True)
        return r - (r @ u) @ u.T

    rx, ry = resid(x), resid(y)
    den = np.linalg.norm(rx, axis=1) * np.linalg.norm(ry, axis=1)
    out = np.divide((rx * ry).sum(1), den, out=np.zeros(len(rx)), where=den > 1e-12)
    return float(out[0]) if one else out


def covariate_null_targets(y: np.ndarray, covariate: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``[n, len(y)]`` targets under "y depends on the covariate only" (Freedman–Lane): the covariate's
    least-squares fit plus its residuals permuted (``covariate``: ``[len(y)]`` or ``[len(y), c]``)."""
    y, c = np.asarray(y, float), np.asarray(covariate, float)
    design = np.c_[np.ones(len(y)), c.reshape(len(y), -1)]
    fit = design @ np.linalg.lstsq(design, y, rcond=None)[0]
    resid = y - fit
    rng = np.random.default_rng(seed)
    return fit + np.stack([resid[rng.permutation(len(y))] for _ in range(n)]) if n else np.zeros((0, len(y)))


def expanded_level(level: float, n: int) -> float:
    """The percentile-bootstrap level that covers like a ``level`` t-interval on ``n`` values (Hesterberg's
    expanded percentile interval): the plain percentile bootstrap of a mean undercovers for small ``n``, most
    at high levels (e.g. after a Bonferroni correction)."""
    if n < 2:
        return level
    q = np.sqrt(n / (n - 1)) * _st.t.ppf(1 - (1 - level) / 2, n - 1)
    return float(1 - 2 * _st.norm.sf(q))


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of ``values`` (NaN with fewer than two values)."""
    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return float("nan"), float("nan")
    half = _st.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
    return float(v.mean() - half), float(v.mean() + half)
