"""The numbers behind ``explain``: the nested leave-one-question-out ridge of the per-question EM-specific rise on
per-question factors (:mod:`emprobe.analysis.explain.nested`), each factor's unique contribution (drop-one ΔR²)
with a permutation null that reruns the whole nested procedure and a Holm correction over factors, the category
term, and the per-question statistics (CI over pairs, consistency between datasets).

Nulls: the model's R² against shuffled targets (the stacked prior prediction rebuilt from each shuffled target);
a plain factor's ΔR² against its column shuffled; the prior factor's ΔR² against its features' rows shuffled (the
prior operators rebuilt). CIs: a bootstrap over questions of the cross-validated predictions (held fixed). A
factor that carries nothing costs out-of-sample R², so its ΔR² sits slightly below 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from emprobe.analysis.explain.nested import (
    CHUNK,
    bootstrap_r2,
    fold_designs,
    nested_predict,
    prior_column,
    prior_operators,
    r2_rows,
)
from emprobe.analysis.stats import paired_row_spearman, permutation_pvalue, spearman
from emprobe.analysis.stats.verdict import holm

PRIOR = "prior_prediction"


@dataclass(frozen=True, eq=False)
class FactorModel:
    """Per-question factors ``x [n, p]`` (named ``names``) and, optionally, the linear kernel ``[n, n]`` of the
    prior features whose nested ridge prediction is stacked as the factor ``prior_prediction``."""

    x: np.ndarray
    names: tuple[str, ...]
    kernel: np.ndarray | None = None
    alpha: float = 1.0
    prior_alpha: float = 1.0

    @property
    def all_names(self) -> tuple[str, ...]:
        return self.names + ((PRIOR,) if self.kernel is not None else ())

    @cached_property
    def ops(self) -> np.ndarray | None:
        return None if self.kernel is None else prior_operators(self.kernel, self.prior_alpha)

    def predict(self, y: np.ndarray, x: np.ndarray | None = None, ops: np.ndarray | None = None,
                prior: bool = True) -> np.ndarray:
        """``[b, n]`` nested predictions for targets ``y`` (``[n]`` or ``[b, n]``), with the factors ``x`` (``[n, p]``
        or ``[b, n, p]``; default ``self.x``) and prior operators ``ops`` (default ``self.ops``; ``prior=False``
        drops the prior factor)."""
        x = self.x if x is None else x
        ops = (self.ops if ops is None else ops) if prior else None
        y2 = np.atleast_2d(np.asarray(y, np.float64))
        b = max(len(y2), x.shape[0] if x.ndim == 3 else 1, ops.shape[0] if ops is not None and ops.ndim == 4 else 1)
        if not len(y2):
            return np.zeros((0, y2.shape[1]))
        y2 = np.broadcast_to(y2, (b, y2.shape[1]))
        n = y2.shape[1]
        step, out = max(1, int(CHUNK // (n * n * (x.shape[-1] + 1)))), []
        for s in range(0, b, step):  # chunks bound the [chunk, n, n, p] designs
            yb = y2[s:s + step]
            ob = ops[s:s + step] if ops is not None and ops.ndim == 4 else ops
            col = prior_column(ob, yb) if ob is not None else None
            out.append(nested_predict(fold_designs(x[s:s + step] if x.ndim == 3 else x, len(yb), col), yb, self.alpha))
        return np.concatenate(out)

    def prior_loqo(self, y: np.ndarray) -> np.ndarray:
        """The prior features' own leave-one-question-out prediction of ``y`` (fold ``i``'s row ``i``)."""
        return np.einsum("iik,k->i", self.ops, y)

    def predict_shuffled_prior(self, y: np.ndarray, perms: np.ndarray) -> np.ndarray:
        """``[m, n]`` predictions of ``y`` with the prior features' rows shuffled by each row of ``perms``
        (``[m, n]``; the prior operators rebuilt for each)."""
        n = len(self.kernel)
        step = max(1, int(CHUNK // n ** 3))
        return np.concatenate([self.predict(y, ops=prior_operators(self.kernel[p[:, :, None], p[:, None, :]],
                                                                    self.prior_alpha))
                               for p in (perms[s:s + step] for s in range(0, len(perms), step))]) \
            if len(perms) else np.zeros((0, n))


def _q95(null: np.ndarray) -> float:
    return float(np.quantile(null, 0.95)) if len(null) else float("nan")


def _perms(rng, n: int, m: int) -> np.ndarray:
    return np.stack([rng.permutation(n) for _ in range(m)]) if m else np.zeros((0, n), int)


def model_fit(fm: FactorModel, y: np.ndarray, *, n_permutations: int = 1000, n_boot: int = 1000,
              seed: int = 0) -> dict:
    """Nested LOQO R² (95% bootstrap CI), ρ, and the y-permutation p (the whole nested procedure per shuffle)."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, np.float64)
    pred = fm.predict(y)[0]
    r2 = float(r2_rows(y, pred[None])[0])
    perms = y[_perms(rng, len(y), n_permutations)]
    null = r2_rows(perms, fm.predict(perms)) if n_permutations else np.zeros(0)
    boot = bootstrap_r2(y, pred[None], rng.integers(0, len(y), (n_boot, len(y))))[:, 0]
    lo, hi = np.quantile(boot, [0.025, 0.975]) if n_boot else (float("nan"),) * 2
    out = {"r2": r2, "r2_ci_low": float(lo), "r2_ci_high": float(hi), "rho": spearman(pred, y),
           "p_permutation": permutation_pvalue(r2, null) if len(null) else float("nan"), "null_r2_95": _q95(null),
           "null_r2_mean": float(null.mean()) if len(null) else float("nan"), "prediction": pred}
    return {**out, **_above_null(r2, lo, hi, null)}


def _above_null(r2: float, lo: float, hi: float, null: np.ndarray) -> dict[str, float]:
    """R² above the shuffled-target mean (LOQO R² is biased below 0 on few questions; the null's mean measures the
    bias through the same estimator) with the wider of two 95% intervals: the bootstrap one shifted by that mean,
    and the permutation null's spread around the estimate (exact under no effect; the bootstrap of fixed
    cross-validated predictions alone misses the refitting noise)."""
    if not len(null):
        return {"r2_above_null": float("nan"), "r2_above_null_ci_low": float("nan"),
                "r2_above_null_ci_high": float("nan")}
    mean, (q_lo, q_hi) = float(null.mean()), np.quantile(null, [0.025, 0.975])
    return {"r2_above_null": r2 - mean, "r2_above_null_ci_low": float(np.nanmin([lo - mean, r2 - q_hi])),
            "r2_above_null_ci_high": float(np.nanmax([hi - mean, r2 - q_lo]))}


def _drop_one(fm: FactorModel, j: int, y: np.ndarray, perms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predictions without factor ``j``, and with it shuffled by each row of ``perms`` (its column, or for the
    prior factor its features' rows)."""
    if not len(perms):
        return fm.predict(y, x=np.delete(fm.x, j, axis=1) if fm.all_names[j] != PRIOR else None,
                          prior=fm.all_names[j] != PRIOR)[0], np.zeros((0, len(y)))
    if fm.all_names[j] == PRIOR:
        return fm.predict(y, prior=False)[0], fm.predict_shuffled_prior(y, perms)
    shuffled = np.repeat(fm.x[None], len(perms), axis=0)
    shuffled[:, :, j] = fm.x[perms, j]
    return fm.predict(y, x=np.delete(fm.x, j, axis=1))[0], fm.predict(y, x=shuffled)


def factor_contributions(fm: FactorModel, y: np.ndarray, *, control: np.ndarray | None = None,
                         n_permutations: int = 1000, n_boot: int = 1000, seed: int = 0) -> tuple[dict, pd.DataFrame]:
    """The full model (:func:`model_fit`) and one row per factor: drop-one ΔR², its permutation null and p, the
    Holm-adjusted p over the factors, a 95% bootstrap CI, and the marginal ρ with the target (and with the
    aligned control's change, ``control``, beside it)."""
    y = np.asarray(y, np.float64)
    model = model_fit(fm, y, n_permutations=n_permutations, n_boot=n_boot, seed=seed)
    rng = np.random.default_rng([seed, 0xFAC])
    idx = rng.integers(0, len(y), (n_boot, len(y)))
    rows = []
    for j, name in enumerate(fm.all_names):
        red, null_pred = _drop_one(fm, j, y, _perms(rng, len(y), n_permutations))
        red_r2 = float(r2_rows(y, red[None])[0])
        delta, null_d = model["r2"] - red_r2, r2_rows(y, null_pred) - red_r2
        boot = bootstrap_r2(y, np.stack([model["prediction"], red]), idx)
        lo, hi = np.quantile(boot[:, 0] - boot[:, 1], [0.025, 0.975]) if n_boot else (float("nan"),) * 2
        marg = fm.prior_loqo(y) if name == PRIOR else fm.x[:, j]
        ctl = (fm.prior_loqo(control) if name == PRIOR else fm.x[:, j]) if control is not None else None
        rows.append({"factor": name, "delta_r2": delta, "ci_low": float(lo), "ci_high": float(hi),
                     "p_permutation": permutation_pvalue(delta, null_d) if len(null_d) else float("nan"),
                     "null_95": _q95(null_d), "rho_marginal": spearman(marg, y),
                     "rho_control": spearman(ctl, control) if ctl is not None else float("nan")})
    table = pd.DataFrame(rows)
    table["p_holm"] = table.factor.map(holm(dict(zip(table.factor, table.p_permutation))))
    table = table.sort_values("delta_r2", ascending=False, kind="stable").reset_index(drop=True)
    table.insert(1, "rank", np.arange(1, len(table) + 1))
    return model, table


def category_term(fm: FactorModel, categories: np.ndarray, y: np.ndarray, r2_factors: float, *,
                  n_permutations: int = 1000, seed: int = 0) -> dict[str, float]:
    """ΔR² of adding the category (one-hot) to the factor model (nested LOQO R² ``r2_factors``), against shuffled
    category labels."""
    levels = np.unique(categories)
    if len(levels) < 2:
        return {"category_delta_r2": float("nan"), "category_p": float("nan"), "category_null_95": float("nan"),
                "n_categories": len(levels)}

    def design(cats: np.ndarray) -> np.ndarray:
        onehot = (cats[..., None] == levels).astype(float)
        return np.concatenate([np.broadcast_to(fm.x, onehot.shape[:-1] + fm.x.shape[-1:]), onehot], axis=-1)

    y = np.asarray(y, np.float64)
    delta = float(r2_rows(y, fm.predict(y, x=design(categories)))[0]) - r2_factors
    perms = _perms(np.random.default_rng([seed, 0xCA7]), len(y), n_permutations)
    null = r2_rows(y, fm.predict(y, x=design(categories[perms]))) - r2_factors if n_permutations else np.zeros(0)
    return {"category_delta_r2": delta, "category_p": permutation_pvalue(delta, null) if len(null) else float("nan"),
            "category_null_95": _q95(null), "n_categories": len(levels)}


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
