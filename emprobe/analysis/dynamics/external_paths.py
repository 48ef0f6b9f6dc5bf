"""Claim 1 on external runs, the comparisons: schedules' scores interpolated to matched eval loss along their
paths, their gaps with Bonferroni and TOST intervals, and the run pairs closest to "better aligned at similar or
lower loss". Every array carries the observed value in row 0 and the bootstrap replicates after it."""

from __future__ import annotations

import warnings
from itertools import combinations

import numpy as np
import pandas as pd

from scipy import stats as _st

MIN_REACHED = 0.9  # a CI needs at least this share of replicates where the level is reached


def interpolate(losses: np.ndarray, values: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``[B]`` value of a path at ``level[b]``: linear between the first consecutive points (in path order)
    whose losses bracket it; NaN where the path never reaches it. ``losses``/``values``: ``[B, k]``."""
    if losses.shape[1] == 1:
        return np.where(losses[:, 0] == level, values[:, 0], np.nan)
    a, b = losses[:, :-1], losses[:, 1:]
    lv = level[:, None]
    hit = (np.minimum(a, b) <= lv) & (lv <= np.maximum(a, b))
    i = hit.argmax(1)
    rows = np.arange(len(losses))
    la, lb = a[rows, i], b[rows, i]
    w = np.where(lb == la, 0.0, (level - la) / np.where(lb == la, 1.0, lb - la))
    out = (1 - w) * values[rows, i] + w * values[rows, i + 1]
    return np.where(hit.any(1), out, np.nan)


def _path_arrays(path: list[list[int]], align: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (np.stack([loss[:, p].mean(1) for p in path], 1), np.stack([align[:, p].mean(1) for p in path], 1))


def _levels(g, loss: np.ndarray, fixed, quantiles) -> tuple[list[float], np.ndarray]:
    """``(labels, [n_levels, B+1])``: fixed levels, or the shared range's quantiles in every replicate."""
    if fixed is not None:
        return list(fixed), np.tile(np.array(fixed, float)[:, None], (1, len(loss)))
    lows, highs = [], []
    for paths in g.paths.values():
        pts = np.concatenate([loss[:, [i for p in path for i in p]] for path in paths], axis=1)
        lows.append(pts.min(1))
        highs.append(pts.max(1))
    lo, hi = np.max(lows, 0), np.min(highs, 0)
    ok = hi > lo
    levels = np.stack([np.where(ok, lo + q * (hi - lo), np.nan) for q in quantiles])
    return list(quantiles), levels


def half_width(boot: np.ndarray, level: float, n_units: int, axis: int = 0) -> np.ndarray:
    """``t(level, n_units − 1) x`` the bootstrap SE: a t-interval on the resampled units, which holds at the extreme
    levels of a Bonferroni correction where bootstrap percentiles run out of draws (and widens with few units)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        se = np.nanstd(boot, axis=axis, ddof=1)
    return _st.t.ppf(0.5 + level / 2, max(n_units - 1, 1)) * se


def _interval(est: float, boot: np.ndarray, level: float, n_units: int) -> tuple[float, float]:
    boot = boot[np.isfinite(boot)]
    if len(boot) < 2 or not np.isfinite(est):
        return float("nan"), float("nan")
    h = float(half_width(boot, level, n_units))
    return est - h, est + h


def _quantiles(x: np.ndarray, alpha: float) -> tuple[float, float]:
    x = x[np.isfinite(x)]
    return (float(np.quantile(x, alpha / 2)), float(np.quantile(x, 1 - alpha / 2))) if len(x) else (np.nan, np.nan)


def _reached(x: np.ndarray) -> bool:
    return bool(np.isfinite(x[0])) and np.isfinite(x[1:]).mean() >= MIN_REACHED


def unit_values(g, boot, fixed, final_q, traj_q) -> tuple[list, np.ndarray, dict[str, np.ndarray]]:
    """``(level labels, levels [L, B+1], {unit: values [L, B+1]})`` for one data group."""
    align, loss = boot
    labels, levels = _levels(g, loss, fixed, traj_q if g.trajectories else final_q)
    values = {}
    for unit, paths in g.paths.items():
        arrays = [_path_arrays(p, align, loss) for p in paths]
        with warnings.catch_warnings():  # a level no path of the unit reaches: NaN, not a warning
            warnings.simplefilter("ignore", RuntimeWarning)
            values[unit] = np.stack([np.nanmean(np.stack([interpolate(lo, va, lv) for lo, va in arrays]), 0)
                                     for lv in levels])
    return labels, levels, values


def matched_gaps(groups, boots, fixed, final_q, traj_q, alpha: float, sign: float
                 ) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Matched-loss scores per unit and level, and the gap of every unit pair at every level, with the
    Bonferroni-corrected (1 − α/m) CI and the (1 − 2α) TOST interval (t-intervals on the joint bootstrap's SE)."""
    blocks = [(g, *unit_values(g, b, fixed, final_q, traj_q)) for g, b in zip(groups, boots)]
    m = sum(len(lab) * len(v) * (len(v) - 1) // 2 for _, lab, _, v in blocks)
    matched, gaps = [], []
    for g, labels, levels, values in blocks:
        n_q = g.n_units
        for k, lab in enumerate(labels):
            base = {"data": g.data, "level": lab, "loss_level": float(levels[k, 0]),
                    **dict(zip(("level_ci_low", "level_ci_high"), _quantiles(levels[k, 1:], alpha)))}
            for unit, v in values.items():
                lo, hi = _interval(sign * v[k, 0], sign * v[k, 1:], 1 - alpha, n_q) if _reached(v[k]) \
                    else (np.nan, np.nan)
                matched.append({**base, "unit": unit, "score": float(sign * v[k, 0]), "ci_low": lo, "ci_high": hi})
            for a, b in combinations(values, 2):
                d = values[a][k] - values[b][k]
                ok = _reached(d)
                bon = _interval(d[0], d[1:], 1 - alpha / max(m, 1), n_q) if ok else (np.nan, np.nan)
                tost = _interval(d[0], d[1:], 1 - 2 * alpha, n_q) if ok else (np.nan, np.nan)
                gaps.append({**base, "unit_a": a, "unit_b": b, "gap": float(d[0]), "ci_low": bon[0],
                             "ci_high": bon[1], "tost_low": tost[0], "tost_high": tost[1]})
    cols = ["data", "level", "loss_level", "level_ci_low", "level_ci_high"]
    return (pd.DataFrame(matched, columns=cols + ["unit", "score", "ci_low", "ci_high"]),
            pd.DataFrame(gaps, columns=cols + ["unit_a", "unit_b", "gap", "ci_low", "ci_high", "tost_low",
                                               "tost_high"]), m)


def closest_pairs(groups, boots, n_pairs: int, alpha: float, sign: float) -> pd.DataFrame:
    """Run pairs (A, B) where A's eval loss is not shown higher than B's (the 95 % CI of A − B reaches 0 or
    below), ranked by how much better aligned A is: the runs that come closest to contradicting the claim."""
    rows = []
    for g, (align, loss) in zip(groups, boots):
        n_q = g.n_units
        d_a = align[:, :, None] - align[:, None, :]  # [B+1, R, R]: i better aligned than j when > 0
        d_l = loss[:, :, None] - loss[:, None, :]
        h = half_width(d_a[1:], 1 - alpha, n_q)
        q_a = np.stack([d_a[0] - h, d_a[0] + h])
        q_l = np.quantile(d_l[1:], [alpha / 2, 1 - alpha / 2], axis=0)
        for i, j in zip(*np.nonzero(q_l[0] <= 0)):
            if i == j or d_a[0, i, j] <= 0:
                continue
            a, b = g.runs[i], g.runs[j]
            rows.append({"data": g.data, "better": a.name, "worse": b.name, "unit_better": g.units[i],
                         "unit_worse": g.units[j], "lr_better": a.meta.get("lr"), "lr_worse": b.meta.get("lr"),
                         "score_gap": float(d_a[0, i, j]), "gap_ci_low": float(q_a[0, i, j]),
                         "gap_ci_high": float(q_a[1, i, j]), "loss_diff": float(d_l[0, i, j]),
                         "loss_ci_low": float(q_l[0, i, j]), "loss_ci_high": float(q_l[1, i, j]),
                         "score_better": float(sign * align[0, i]), "score_worse": float(sign * align[0, j])})
    cols = ["data", "better", "worse", "unit_better", "unit_worse", "lr_better", "lr_worse", "score_gap",
            "gap_ci_low", "gap_ci_high", "loss_diff", "loss_ci_low", "loss_ci_high", "score_better", "score_worse"]
    df = pd.DataFrame(rows, columns=cols)
    return df.sort_values("score_gap", ascending=False).head(n_pairs).reset_index(drop=True)
