"""Training dynamics (paper §1): rank correlations and best-at-loss over a table of checkpoints.

Input is a tidy table with one row per (run, checkpoint): ``run``, ``schedule``, ``step``, ``val_loss``
(in-domain, held out) and ``ood_score`` (out-of-domain misalignment, e.g. the mean margin on
``builtin:em-core``; higher = more misaligned). The schedule comparison at matched loss (the claim's
test) lives in :mod:`emprobe.analysis.dynamics.matched_loss`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from emprobe.analysis.stats import paired_row_spearman, permutation_pvalue, spearman
from emprobe.errors import ConfigError

REQUIRED = ("run", "schedule", "step", "val_loss", "ood_score")


def _check(df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ConfigError(f"dynamics table lacks columns {missing}")
    if df.empty:
        raise ConfigError("dynamics table is empty")
    if not np.all(np.isfinite(df[["val_loss", "ood_score"]].to_numpy(float))):
        raise ConfigError("NaN or inf in val_loss / ood_score")


def _tie_safe(rho):
    """ρ rounded to 12 decimals: on a few checkpoints many permutations tie with the observed ρ exactly, and
    rounding error (1e-16) must not decide whether a tie counts."""
    return np.round(rho, 12) if isinstance(rho, np.ndarray) else float(round(rho, 12))


def loss_alignment_correlations(df: pd.DataFrame, n_permutations: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ(val_loss, ood_score) within each run and across all checkpoints, with permutation p.

    Within-run permutations shuffle the scores of that run; the across-runs row permutes within runs too
    (so between-run differences do not count as evidence).
    """
    _check(df)
    rng = np.random.default_rng(seed)
    rows = []
    for run, g in df.groupby("run", sort=True):
        if len(g) < 3:
            continue
        rho = _tie_safe(spearman(g.val_loss, g.ood_score))
        y = g.ood_score.to_numpy(float)
        perms = np.stack([rng.permutation(y) for _ in range(n_permutations)])
        null = _tie_safe(paired_row_spearman(g.val_loss.to_numpy(float), perms))
        rows.append({"scope": str(run), "n": len(g), "spearman_rho": rho,
                     "p_two_sided": permutation_pvalue(rho, null, "two-sided")})
    rho = _tie_safe(spearman(df.val_loss, df.ood_score))
    groups = [np.flatnonzero(df.run.to_numpy() == r) for r in df.run.unique()]
    scores = df.ood_score.to_numpy(float)

    def within_shuffle() -> np.ndarray:
        out = scores.copy()
        for idx in groups:
            out[idx] = scores[rng.permutation(idx)]
        return out

    null = _tie_safe(paired_row_spearman(df.val_loss.to_numpy(float),
                                         np.stack([within_shuffle() for _ in range(n_permutations)])))
    rows.append({"scope": "all runs", "n": len(df), "spearman_rho": rho,
                 "p_two_sided": permutation_pvalue(rho, null, "two-sided")})
    return pd.DataFrame(rows)


def best_alignment_at_loss(df: pd.DataFrame, loss_levels: list[float] | None = None) -> pd.DataFrame:
    """Per schedule and loss level: the lowest ``ood_score`` among checkpoints with ``val_loss <= level``.

    Default levels are the 25th, 50th and 75th percentiles of all validation losses. A schedule with no
    checkpoint at or below a level gets NaN for it.
    """
    _check(df)
    levels = loss_levels or [float(q) for q in np.quantile(df.val_loss, [0.25, 0.5, 0.75])]
    rows = []
    for sched, g in df.groupby("schedule", sort=True):
        for level in levels:
            ok = g[g.val_loss <= level]
            best = ok.loc[ok.ood_score.idxmin()] if len(ok) else None
            rows.append({"schedule": sched, "loss_level": level, "n_checkpoints": len(ok),
                         "best_ood_score": float(best.ood_score) if best is not None else float("nan"),
                         "run": best.run if best is not None else None,
                         "step": int(best.step) if best is not None else None})
    return pd.DataFrame(rows)
