"""Hierarchical bootstrap of group means over runs and questions (claim 1: schedules, seeds, questions).

Each group (a schedule, or "the misaligned runs") holds ``[k runs, n questions]`` values; questions are shared by
every group (paired). One draw resamples the runs of every group (with replacement, the run deviations from the
group mean inflated by ``sqrt(k / (k - 1))`` so that a few runs do not understate their spread) and then the
questions (one draw shared by every group). A contrast of group means (a gap, a rise) gets its standard error from
the joint draws and its degrees of freedom from the two single-stage bootstraps (Welch–Satterthwaite over the
question and run components), so three seeds give a t interval on few degrees of freedom, not a normal one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as _st

from emprobe.analysis.stats.verdict import Effect


@dataclass(frozen=True)
class Contrast:
    """A contrast of group means: estimate, standard error, degrees of freedom, and runs behind it."""

    estimate: float
    se: float
    df: float
    n_runs: int
    n_questions: int

    @property
    def estimable(self) -> bool:
        return bool(np.isfinite(self.se)) and self.se >= 0 and self.df > 0

    def effect(self, level: float = 0.95) -> Effect:
        """The two-sided t interval at ``level`` (0.90 for a 5 % TOST)."""
        if not self.estimable:
            return Effect(self.estimate, float("nan"), float("nan"), level)
        half = float(_st.t.ppf(1 - (1 - level) / 2, self.df)) * self.se if self.se > 0 else 0.0
        return Effect(self.estimate, self.estimate - half, self.estimate + half, level)

    @property
    def p_value(self) -> float:
        """Two-sided p of ``estimate != 0`` (t on ``df``)."""
        if not self.estimable:
            return float("nan")
        if self.se == 0:
            return 0.0 if self.estimate != 0 else 1.0
        return float(2 * _st.t.sf(abs(self.estimate) / self.se, self.df))


@dataclass(frozen=True, eq=False)
class HierarchicalBootstrap:
    """Bootstrap draws of every group's mean: joint (runs then questions), questions only, runs only."""

    names: tuple[str, ...]
    means: np.ndarray  # [G] point estimates (mean over runs and questions)
    joint: np.ndarray  # [G, B]
    questions_only: np.ndarray  # [G, B]
    runs_only: np.ndarray  # [G, B]
    n_runs: tuple[int, ...]
    n_questions: int

    def contrast(self, weights: dict[str, float]) -> Contrast:
        """``sum(w_g * mean_g)`` with its SE (joint draws) and Welch–Satterthwaite df."""
        w = np.array([weights.get(n, 0.0) for n in self.names])
        used = w != 0
        est = float(w @ self.means)
        se = float(np.std(w @ self.joint, ddof=1)) if self.joint.shape[1] > 1 else float("nan")
        nq = self.n_questions
        v_q = float(np.var(w @ self.questions_only, ddof=1)) * nq / (nq - 1) if nq > 1 else 0.0
        v_r = float(np.var(w @ self.runs_only, ddof=1))
        df_r = sum(k - 1 for k, u in zip(self.n_runs, used) if u)
        if nq < 2 and df_r == 0:  # one value per group: nothing to estimate a spread from
            se = float("nan")
        parts = [(v, d) for v, d in ((v_q, nq - 1), (v_r, df_r)) if v > 1e-300 and d > 0]
        df = (sum(v for v, _ in parts) ** 2 / sum(v * v / d for v, d in parts)) if parts else float("inf")
        runs = sum(k for k, u in zip(self.n_runs, used) if u)
        return Contrast(est, se, float(df), runs, nq)


def hierarchical_bootstrap(groups: dict[str, np.ndarray], n_boot: int = 2000, seed: int = 0,
                           question_draws: np.ndarray | None = None) -> HierarchicalBootstrap:
    """Draws of every group's mean (see the module docstring). ``groups[name]``: ``[k, n_q]`` (runs x questions,
    the same questions in every group); ``question_draws``: ``[n_boot, n_q]`` indices to share with other calls."""
    rng = np.random.default_rng([seed, 0x41E2])
    arrays = {k: np.atleast_2d(np.asarray(v, float)) for k, v in groups.items()}
    n_q = next(iter(arrays.values())).shape[1]
    if any(a.shape[1] != n_q for a in arrays.values()):
        raise ValueError("every group needs the same questions")
    qd = rng.integers(0, n_q, (n_boot, n_q)) if question_draws is None else question_draws
    means, joint, q_only, r_only = [], [], [], []
    for a in arrays.values():
        k, mu = len(a), a.mean(0)
        dev = (a - mu) * (np.sqrt(k / (k - 1)) if k > 1 else 0.0)
        run_means = mu + dev[rng.integers(0, k, (n_boot, k))].mean(1)  # [B, n_q]
        means.append(float(mu.mean()))
        joint.append(np.take_along_axis(run_means, qd, 1).mean(1))
        r_only.append(run_means.mean(1))
        q_only.append(mu[qd].mean(1))
    return HierarchicalBootstrap(tuple(arrays), np.array(means), np.stack(joint), np.stack(q_only), np.stack(r_only),
                                 tuple(len(a) for a in arrays.values()), n_q)
