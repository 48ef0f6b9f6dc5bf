"""Statistics shared by the analyses: rank correlation with permutation p, bootstrap CIs, AUROC."""

from __future__ import annotations

import numpy as np
from scipy import stats as _st

from emprobe.errors import ConfigError


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


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney U / n_pos n_neg; ties count half)."""
    labels, scores = np.asarray(labels).astype(bool), np.asarray(scores, float)
    _finite(scores)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        raise ConfigError("AUROC needs both positive and negative labels")
    ranks = _st.rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def zscore_vs_null(observed: float, null: np.ndarray) -> float:
    """How many null standard deviations ``observed`` lies above the null mean."""
    null = np.asarray(null, float)
    sd = null.std(ddof=1) if len(null) > 1 else 0.0
    return float((observed - null.mean()) / sd) if sd > 0 else float("inf") * np.sign(observed - null.mean())
