"""The numbers behind ``ep.mitigations``: each mitigation against the unmitigated reference at matched in-domain loss.

Per dataset, every run is a trajectory of checkpoints ``(val_loss, per-question off-domain margins)``; at a loss
level ``L`` a run's margins are interpolated between the two checkpoints where its loss first crosses ``L``
(:func:`emprobe.analysis.dynamics.matched_loss.first_crossing`, the machinery of claim 1). Mitigation ``m`` is
compared with the reference (``none``) at ``L_m``: the lowest in-domain loss that *every* run of both reaches.

* EM-specific rise of the reference at ``L_m`` (per question): its margin there minus the aligned-data control's
  margin at the same (interpolated) step — the control is matched by training steps, its own in-domain loss being
  on other data; with only a first and a last checkpoint the control is interpolated linearly in steps.
* removed: reference margin − mitigation margin at ``L_m``; **fraction removed** = mean removed / mean rise.
* CIs: a hierarchical bootstrap — seeds (paired by seed when both sides have the same seeds), then questions —
  percentile intervals widened to cover like t-intervals over questions (expanded percentile) and Bonferroni-
  corrected over the mitigations compared.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emprobe.analysis.dynamics.matched_loss import first_crossing
from emprobe.analysis.stats import expanded_level


@dataclass(frozen=True)
class Trajectory:
    """One run: checkpoints in step order, their in-domain losses and per-question margins ``[n_ck, n_q]``."""

    run: str
    unit: str  # what pairs runs across mitigations (the seed; in a study: schedule, lr and seed)
    steps: np.ndarray
    loss: np.ndarray
    margins: np.ndarray

    def at_loss(self, level: float) -> tuple[np.ndarray, float] | None:
        """``(margins [n_q], step)`` where the run first reaches ``level`` (``None`` if it never does)."""
        hit = first_crossing(self.loss, level)
        if hit is None:
            return None
        i, w = hit
        if w == 0.0:
            return self.margins[i], float(self.steps[i])
        step = float((1 - w) * self.steps[i] + w * self.steps[i + 1])
        return (1 - w) * self.margins[i] + w * self.margins[i + 1], step

    def at_step(self, step: float) -> np.ndarray:
        """Margins linearly interpolated in training steps (clamped to the run's checkpoints)."""
        return np.stack([np.interp(step, self.steps, self.margins[:, q]) for q in range(self.margins.shape[1])])


def trajectories(df: pd.DataFrame, questions: list[str]) -> list[Trajectory]:
    """One :class:`Trajectory` per run of ``df`` (``run, unit, step, val_loss, question_id, margin``)."""
    out = []
    for run, r in df.groupby("run", sort=True):
        wide = r.groupby(["step", "question_id"]).margin.mean().unstack("question_id").sort_index()
        loss = r.groupby("step").val_loss.first().loc[wide.index].to_numpy(float)
        out.append(Trajectory(str(run), str(r.unit.iloc[0]), wide.index.to_numpy(float), loss,
                              wide[questions].to_numpy(float)))
    return out


def shared_level(runs: list[Trajectory]) -> float | None:
    """The lowest in-domain loss every run reaches (``None`` when their loss ranges do not overlap)."""
    low, high = max(float(t.loss.min()) for t in runs), min(float(t.loss.max()) for t in runs)
    return low if low <= high else None


def per_unit(runs: list[Trajectory], values: list) -> dict[str, np.ndarray]:
    """Per pairing unit, the mean of ``values`` over that unit's runs."""
    by: dict[str, list] = {}
    for t, v in zip(runs, values):
        by.setdefault(t.unit, []).append(v)
    return {u: np.mean(v, axis=0) for u, v in sorted(by.items())}


@dataclass(frozen=True)
class Paired:
    """Per-unit per-question arrays of a comparison: reference ``x``, mitigated ``y``, the reference's rise ``d``
    (``[n_units, n_q]`` each; ``paired``: the rows of ``x``/``d`` and ``y`` are the same units, e.g. seeds)."""

    x: np.ndarray
    y: np.ndarray
    d: np.ndarray
    paired: bool

    @classmethod
    def build(cls, ref: dict[str, np.ndarray], mit: dict[str, np.ndarray], rise: dict[str, np.ndarray]) -> "Paired":
        common = sorted(set(ref) & set(mit))
        if common and len(common) == len(ref) == len(mit):
            return cls(np.stack([ref[s] for s in common]), np.stack([mit[s] for s in common]),
                       np.stack([rise[s] for s in common]), True)
        return cls(np.stack(list(ref.values())), np.stack(list(mit.values())), np.stack(list(rise.values())), False)


def bootstrap(p: Paired, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``[n_boot, 3]`` bootstrap draws of (mean removed x − y, mean rise d, fraction removed): seeds resampled
    (jointly when paired), then questions (jointly for every array)."""
    n_q = p.x.shape[1]
    out = np.empty((n_boot, 3))
    for b in range(n_boot):
        sx = rng.integers(0, len(p.x), len(p.x))
        sy = sx if p.paired else rng.integers(0, len(p.y), len(p.y))
        q = rng.integers(0, n_q, n_q)
        x, y, d = p.x[sx][:, q].mean(), p.y[sy][:, q].mean(), p.d[sx][:, q].mean()
        out[b] = (x - y, d, (x - y) / d if d != 0 else np.nan)
    return out


def interval(draws: np.ndarray, level: float, n_q: int) -> tuple[float, float]:
    """Expanded percentile interval of ``draws`` at ``level`` (NaN when it cannot be formed)."""
    draws = draws[np.isfinite(draws)]
    if n_q < 2 or len(draws) < 10:
        return float("nan"), float("nan")
    lv = expanded_level(level, n_q)
    lo, hi = np.quantile(draws, [(1 - lv) / 2, 1 - (1 - lv) / 2])
    return float(lo), float(hi)


def summarise(p: Paired, n_boot: int, level: float, rng: np.random.Generator, prefix: str = "") -> dict[str, float]:
    """Estimates and CIs of ``removed``, ``rise`` and ``fraction`` (keys prefixed with ``prefix``); the rise's
    CI is at 95 % (it is the precondition, not one of the compared effects)."""
    x, y, d = p.x.mean(0), p.y.mean(0), p.d.mean(0)
    removed, rise = float((x - y).mean()), float(d.mean())
    draws, n_q = bootstrap(p, n_boot, rng), p.x.shape[1]
    out = {"removed": removed, "rise": rise, "fraction": removed / rise if rise != 0 else float("nan")}
    for j, (key, lv) in enumerate((("removed", level), ("rise", 0.95), ("fraction", level))):
        out[f"{key}_ci_low"], out[f"{key}_ci_high"] = interval(draws[:, j], lv, n_q)
    return {f"{prefix}{k}": v for k, v in out.items()}


def unit_difference(ref: dict[str, float], mit: dict[str, float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``mit − ref`` over units (paired when they match) with a t-interval (NaN CI for one unit)."""
    from scipy import stats

    common = sorted(set(ref) & set(mit))
    diffs = np.array([mit[s] - ref[s] for s in common]) if common else \
        np.array([np.mean(list(mit.values())) - np.mean(list(ref.values()))])
    est = float(diffs.mean())
    if len(diffs) < 2:
        return est, float("nan"), float("nan")
    half = float(stats.t.ppf(1 - (1 - level) / 2, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs)))
    return est, est - half, est + half
