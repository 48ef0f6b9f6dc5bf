"""Claim 1's test: learning schedules compared at matched in-domain loss.

For each training dataset (in-domain losses of different datasets are not comparable), every non-control
run is a trajectory of checkpoints ``(val_loss, per-question off-domain margins)`` in step order. At a
loss level ``L`` a run's margins are interpolated linearly between the two checkpoints where its loss
first crosses ``L`` (the point at which training first reaches that loss); a schedule's margins at ``L``
are the mean over its runs that reach ``L``. The default levels are the lower end and the quartiles of the
loss range that **every** schedule reaches (the intersection of the schedules' ranges): its lower end is
where the least-trained schedule's minimum lies, the point the claim is about; its upper end (step 0,
the same base model for every run) is left out.

Uncertainty is a bootstrap over questions, resampled jointly for every schedule and level of a dataset
(the comparison is paired by question; expanded percentile intervals, which cover like t-intervals on
few questions). A schedule is better aligned than another at ``L`` when their
margin gap's CI excludes 0; the CI of each gap is Bonferroni-widened over all (level, schedule pair)
comparisons so that "no schedule is better beyond the CI" keeps a 95 % family-wise level.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np
import pandas as pd

from emprobe.analysis.stats import expanded_level

QUANTILES = (0.0, 0.25, 0.5, 0.75)  # of the shared range; 0 = where the least-trained schedule ends


@dataclass(frozen=True, eq=False)
class MatchedLoss:
    ranges: pd.DataFrame  # data, schedule, n_runs, loss_min, loss_max, shared_low, shared_high
    matched: pd.DataFrame  # data, loss_level, schedule, n_runs, margin, ci_low, ci_high
    gaps: pd.DataFrame  # data, loss_level, schedule_a, schedule_b, gap (a - b), ci_low, ci_high, better
    spread: pd.DataFrame  # data, loss_level, n_schedules, spread, ci_low, ci_high, best, worst
    n_comparisons: int
    ci_level: float  # the per-gap CI level after the Bonferroni correction


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


def _trajectories(g: pd.DataFrame, questions: list[str]) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
    """``{run: (schedule, val_loss[n_ckpt], margins[n_ckpt, n_q])}`` in step order."""
    out = {}
    for run, r in g.groupby("run", sort=True):
        wide = r.groupby(["step", "question_id"]).margin.mean().unstack("question_id").sort_index()
        loss = r.groupby("step").val_loss.first().loc[wide.index].to_numpy(float)
        out[str(run)] = (str(r.schedule.iloc[0]), loss, wide[questions].to_numpy(float))
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


def _schedule_matrix(traj: dict, level: float) -> tuple[list[str], np.ndarray, list[int]]:
    """Schedules reaching ``level``, their mean margins there ``[S, n_q]`` and how many runs each."""
    by: dict[str, list[np.ndarray]] = {}
    for sched, loss, m in traj.values():
        v = _at_level(loss, m, level)
        if v is not None:
            by.setdefault(sched, []).append(v)
    names = sorted(by)
    if not names:
        return [], np.zeros((0, 0)), []
    return names, np.stack([np.mean(by[s], axis=0) for s in names]), [len(by[s]) for s in names]


def _ci(boots: np.ndarray, level: float, ok: bool, n: int) -> tuple[float, float]:
    """Expanded percentile interval of bootstrap means over ``n`` questions (NaN when not ``ok``)."""
    if not ok:
        return float("nan"), float("nan")
    level = expanded_level(level, n)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def compare_at_matched_loss(margins: pd.DataFrame, levels=None, *, per_question: bool = True, n_boot: int = 10000,
                            alpha: float = 0.05, seed: int = 0) -> MatchedLoss:
    """Schedules' off-domain margins at matched in-domain loss, per dataset (see the module docstring).

    ``margins``: long table of NON-control checkpoints (``run``, ``schedule``, ``data``, ``step``,
    ``val_loss``, ``question_id``, ``margin``). ``per_question=False`` (one pseudo-question per checkpoint):
    no CI can be formed and every CI is NaN.
    """
    blocks = []  # (data, level, names, A, n_runs)
    range_frames = []
    for data, g in margins.groupby("data", sort=True):
        questions = sorted(set.intersection(*[set(r.question_id) for _, r in g.groupby("run")]))
        traj = _trajectories(g, questions)
        ranges, lv = _levels(traj, levels)
        range_frames.append(ranges.assign(data=data))
        blocks += [(data, level, *_schedule_matrix(traj, level)) for level in lv]
    m = sum(len(names) * (len(names) - 1) // 2 for _, _, names, _, _ in blocks)
    ci_level = 1 - alpha / max(m, 1)
    rng = np.random.default_rng(seed)
    matched, gaps, spread, idx_by_data = [], [], [], {}
    for data, level, names, a, n_runs in blocks:
        if not names:
            continue
        n_q = a.shape[1]
        ok = per_question and n_q > 1
        idx = idx_by_data.setdefault(data, rng.integers(0, n_q, size=(n_boot, n_q)))
        boots = a[:, idx].mean(-1)  # [S, n_boot]
        means = a.mean(1)
        for s, name in enumerate(names):
            matched.append({"data": data, "loss_level": level, "schedule": name, "n_runs": n_runs[s],
                            "margin": float(means[s]), **dict(zip(("ci_low", "ci_high"),
                                                                  _ci(boots[s], 1 - alpha, ok, n_q)))})
        for i, j in combinations(range(len(names)), 2):
            lo, hi = _ci(boots[i] - boots[j], ci_level, ok, n_q)
            better = names[i] if hi < 0 else names[j] if lo > 0 else ""
            gaps.append({"data": data, "loss_level": level, "schedule_a": names[i], "schedule_b": names[j],
                         "gap": float(means[i] - means[j]), "ci_low": lo, "ci_high": hi, "better": better})
        if len(names) > 1:
            lo, hi = _ci(boots.max(0) - boots.min(0), 1 - alpha, ok, n_q)
            spread.append({"data": data, "loss_level": level, "n_schedules": len(names),
                           "spread": float(means.max() - means.min()), "ci_low": lo, "ci_high": hi,
                           "best": names[int(means.argmin())], "worst": names[int(means.argmax())]})
    cols = {"matched": ["data", "loss_level", "schedule", "n_runs", "margin", "ci_low", "ci_high"],
            "gaps": ["data", "loss_level", "schedule_a", "schedule_b", "gap", "ci_low", "ci_high", "better"],
            "spread": ["data", "loss_level", "n_schedules", "spread", "ci_low", "ci_high", "best", "worst"]}
    ranges = pd.concat(range_frames, ignore_index=True) if range_frames else pd.DataFrame()
    return MatchedLoss(ranges, pd.DataFrame(matched, columns=cols["matched"]),
                       pd.DataFrame(gaps, columns=cols["gaps"]), pd.DataFrame(spread, columns=cols["spread"]),
                       m, ci_level)
