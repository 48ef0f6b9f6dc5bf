"""Claim 1's test: learning schedules compared at matched in-domain loss.

For each training dataset (in-domain losses of different datasets are not comparable), every non-control
run is a trajectory of checkpoints ``(val_loss, per-question off-domain margins)`` in step order. At a
loss level ``L`` a run's margins are interpolated linearly between the two checkpoints where its loss
first crosses ``L`` (the point at which training first reaches that loss); a schedule's margins at ``L``
are the mean over its runs that reach ``L``. The default levels are the lower end and the quartiles of the
loss range that **every** schedule reaches (the intersection of the schedules' ranges): its lower end is
where the least-trained schedule's minimum lies, the point the claim is about; its upper end (step 0,
the same base model for every run) is left out.

Uncertainty is a hierarchical bootstrap (:mod:`emprobe.analysis.stats.hierarchical`): the runs of each schedule
(seeds, learning rates) resampled, then the questions (one draw shared by every schedule and level of a dataset:
the comparison is paired by question). Each gap gets a t interval from the bootstrap SE, on Welch–Satterthwaite
degrees of freedom: its 95 % CI, its 90 % TOST interval (equivalence at 5 %; no Bonferroni widening, since "every
gap is small" is an intersection–union test) and its two-sided p, Holm-adjusted over every (dataset, level,
schedule pair) comparison; ``better`` names the better-aligned schedule of a gap whose Holm-adjusted p < 0.05.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from emprobe.analysis.stats.hierarchical import hierarchical_bootstrap
from emprobe.analysis.stats.verdict import holm

QUANTILES = (0.0, 0.25, 0.5, 0.75)  # of the shared range; 0 = where the least-trained schedule ends
GAP_COLUMNS = ["data", "loss_level", "schedule_a", "schedule_b", "gap", "se", "df", "n_runs", "ci_low", "ci_high",
               "tost_low", "tost_high", "p", "p_holm", "better"]


@dataclass(frozen=True, eq=False)
class MatchedLoss:
    ranges: pd.DataFrame  # data, schedule, n_runs, loss_min, loss_max, shared_low, shared_high
    matched: pd.DataFrame  # data, loss_level, schedule, n_runs, margin, ci_low, ci_high
    gaps: pd.DataFrame  # GAP_COLUMNS: gap = a - b, 95% CI, 90% TOST interval, p, Holm p, better
    spread: pd.DataFrame  # data, loss_level, n_schedules, spread, ci_low, ci_high, best, worst
    n_comparisons: int
    runs_per_schedule: int  # the fewest runs behind any schedule at any level (1: no run-to-run noise in the CIs)


def first_crossing(losses: np.ndarray, level: float) -> tuple[int, float] | None:
    """``(i, w)``: the first segment ``i -> i+1`` (in step order) whose losses bracket ``level``, and the
    interpolation weight of checkpoint ``i + 1``; ``None`` when the run never reaches ``level``."""
    for i in range(len(losses) - 1):
        a, b = losses[i], losses[i + 1]
        if min(a, b) <= level <= max(a, b):
            return i, 0.0 if a == b else float((level - a) / (b - a))
    if len(losses) == 1 and losses[0] == level:
        return 0, 0.0
    return None


def _at_level(losses: np.ndarray, margins: np.ndarray, level: float) -> np.ndarray | None:
    hit = first_crossing(losses, level)
    if hit is None:
        return None
    i, w = hit
    return margins[i] if w == 0.0 else (1 - w) * margins[i] + w * margins[i + 1]


def trajectories(g: pd.DataFrame, questions: list[str]) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """``{run: (schedule, val_loss[n_ckpt], margins[n_ckpt, n_q])}`` in step order (one pivot for every run)."""
    wide = g.pivot_table(index=["run", "step"], columns="question_id", values="margin", aggfunc="mean")[questions]
    loss = g.groupby(["run", "step"]).val_loss.first().loc[wide.index]
    sched = g.groupby("run").schedule.first()
    values, runs = wide.to_numpy(float), wide.index.get_level_values(0).to_numpy()
    out = {}
    for run in sorted(set(runs)):
        rows = runs == run
        out[str(run)] = (str(sched.loc[run]), loss.to_numpy(float)[rows], values[rows])
    return out


def _levels(traj: dict, levels) -> tuple[pd.DataFrame, list[float]]:
    rows = []
    for sched in sorted({s for s, _, _ in traj.values()}):
        losses = np.concatenate([lo for s, lo, _ in traj.values() if s == sched])
        rows.append({"schedule": sched, "n_runs": sum(s == sched for s, _, _ in traj.values()),
                     "loss_min": float(losses.min()), "loss_max": float(losses.max())})
    ranges = pd.DataFrame(rows)
    lo, hi = float(ranges.loss_min.max()), float(ranges.loss_max.min())
    ranges = ranges.assign(shared_low=lo, shared_high=hi)
    if levels is not None:
        return ranges, [float(v) for v in levels]
    if len(ranges) < 2 or not hi > lo:
        return ranges, []
    return ranges, [lo + q * (hi - lo) for q in QUANTILES]


def _schedule_runs(traj: dict, level: float) -> dict[str, np.ndarray]:
    """``{schedule: [runs reaching level, n_q]}``: each run's margins at ``level``."""
    by: dict[str, list[np.ndarray]] = {}
    for sched, loss, m in traj.values():
        v = _at_level(loss, m, level)
        if v is not None:
            by.setdefault(sched, []).append(v)
    return {s: np.stack(by[s]) for s in sorted(by)}


def _gap_rows(data, level: float, hb, alpha: float) -> list[dict]:
    rows = []
    for a, b in combinations(hb.names, 2):
        c = hb.contrast({a: 1.0, b: -1.0})
        ci, tost = c.effect(1 - alpha), c.effect(1 - 2 * alpha)
        rows.append({"data": data, "loss_level": level, "schedule_a": a, "schedule_b": b, "gap": c.estimate,
                     "se": c.se, "df": c.df, "n_runs": c.n_runs, "ci_low": ci.ci_low, "ci_high": ci.ci_high,
                     "tost_low": tost.ci_low, "tost_high": tost.ci_high, "p": c.p_value})
    return rows


def compare_at_matched_loss(margins: pd.DataFrame, levels=None, *, per_question: bool = True, n_boot: int = 2000,
                            alpha: float = 0.05, seed: int = 0) -> MatchedLoss:
    """Schedules' off-domain margins at matched in-domain loss, per dataset (see the module docstring).

    ``margins``: long table of NON-control checkpoints (``run``, ``schedule``, ``data``, ``step``,
    ``val_loss``, ``question_id``, ``margin``). ``per_question=False`` (one pseudo-question per checkpoint):
    the CIs cover run-to-run variation only, and are NaN for schedules with a single run.
    """
    matched, gaps, spread, range_frames, fewest = [], [], [], [], []
    for d_i, (data, g) in enumerate(margins.groupby("data", sort=True)):
        questions = sorted(set.intersection(*[set(r.question_id) for _, r in g.groupby("run")]))
        traj = trajectories(g, questions)
        ranges, lv = _levels(traj, levels)
        range_frames.append(ranges.assign(data=data))
        draws = np.random.default_rng([seed, d_i]).integers(0, len(questions), (n_boot, len(questions)))
        for l_i, level in enumerate(lv):
            groups = _schedule_runs(traj, level)
            if not groups:
                continue
            hb = hierarchical_bootstrap(groups, n_boot, seed + 7919 * d_i + l_i, draws)
            fewest.append(min(hb.n_runs))
            for name, k in zip(hb.names, hb.n_runs):
                e = hb.contrast({name: 1.0}).effect(1 - alpha)
                matched.append({"data": data, "loss_level": level, "schedule": name, "n_runs": k, "margin": e.estimate,
                                "ci_low": e.ci_low, "ci_high": e.ci_high})
            gaps += _gap_rows(data, level, hb, alpha)
            if len(hb.names) > 1:
                spread.append(_spread(data, level, hb, alpha))
    gaps_df = pd.DataFrame(gaps, columns=GAP_COLUMNS[:-2])
    adj = holm(dict(enumerate(gaps_df.p))) if len(gaps_df) else {}
    gaps_df["p_holm"] = [adj[i] for i in range(len(gaps_df))]
    sig = gaps_df.p_holm < alpha
    gaps_df["better"] = np.where(sig & (gaps_df.gap < 0), gaps_df.schedule_a,
                                 np.where(sig & (gaps_df.gap > 0), gaps_df.schedule_b, ""))
    ranges = pd.concat(range_frames, ignore_index=True) if range_frames else pd.DataFrame()
    return MatchedLoss(ranges, pd.DataFrame(matched, columns=["data", "loss_level", "schedule", "n_runs", "margin",
                                                              "ci_low", "ci_high"]),
                       gaps_df, pd.DataFrame(spread, columns=["data", "loss_level", "n_schedules", "spread", "ci_low",
                                                              "ci_high", "best", "worst"]),
                       len(gaps_df), min(fewest) if fewest else 0)


def _spread(data, level: float, hb, alpha: float) -> dict:
    """Max − min schedule margin with a percentile interval of the joint draws (descriptive)."""
    boots = hb.joint.max(0) - hb.joint.min(0)
    ok = np.isfinite(hb.contrast({hb.names[0]: 1.0, hb.names[1]: -1.0}).se)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2]) if ok else (np.nan, np.nan)
    return {"data": data, "loss_level": level, "n_schedules": len(hb.names),
            "spread": float(hb.means.max() - hb.means.min()), "ci_low": float(lo), "ci_high": float(hi),
            "best": hb.names[int(hb.means.argmin())], "worst": hb.names[int(hb.means.argmax())]}
