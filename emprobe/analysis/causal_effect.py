"""A causal intervention's per-question effect against its controls, decided under the one verdict rule.

Every causal verb measures one number per question (nats/token of margin): how far the intervention moves it
(steer: the margin shift at the largest α; ablate: the difference-in-differences; patch: the part of the gap
restored), and the same number for each control. :class:`CausalEffect` holds

* ``effect`` — the mean over questions with a t-interval over questions;
* ``excess`` — the per-question effect minus the controls' mean effect on that question, with its t-interval
  (the effect beyond what variance-matched directions, or another question's activation, do);
* ``rank_p`` — ``(1 + #{controls whose mean effect ≥ the effect}) / (1 + n_controls)`` (NaN with < 2 controls).

:meth:`CausalEffect.decision` applies :func:`~emprobe.analysis.stats.verdict.decide` to both with the same
SESOI: **supported** needs the effect *and* its excess over the controls supported and the rank p ≤ 0.05;
**not supported** when either is shown small (or of the opposite sign) — the controls doing as much counts;
**inconclusive** otherwise, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as _st

from emprobe.analysis.stats.verdict import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Decision,
    Effect,
    decide,
)

UNITS = "nats/token"


def t_effect(values: np.ndarray, level: float = 0.95) -> Effect:
    """Mean of ``values`` (one per question) with its t-interval over questions (NaN bounds with < 2 values)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        m = float(v.mean()) if len(v) else float("nan")
        return Effect(m, float("nan"), float("nan"), level)
    half = float(_st.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return Effect(float(v.mean()), float(v.mean()) - half, float(v.mean()) + half, level)


@dataclass(frozen=True)
class CausalEffect:
    """See the module docstring; ``control_means`` holds each control's mean effect over questions."""

    effect: Effect
    excess: Effect
    control_means: tuple[float, ...]
    control_kinds: tuple[str, ...]
    sesoi: float
    n_questions: int

    @classmethod
    def measure(cls, effect_q: np.ndarray, controls_q: np.ndarray, sesoi: float,
                kinds: tuple[str, ...] | None = None) -> "CausalEffect":
        """``effect_q [n_questions]``, ``controls_q [n_controls, n_questions]`` (same question order)."""
        e = np.asarray(effect_q, float)
        c = np.atleast_2d(np.asarray(controls_q, float))
        if c.shape[1] != len(e):
            raise ValueError(f"controls have {c.shape[1]} questions, the effect {len(e)}")
        kinds = tuple(kinds) if kinds is not None else ("control",) * len(c)
        return cls(t_effect(e), t_effect(e - c.mean(0)), tuple(float(x) for x in c.mean(1)), kinds, float(sesoi),
                   len(e))

    @property
    def n_controls(self) -> int:
        return len(self.control_means)

    @property
    def n_beating(self) -> int:
        """Controls whose mean effect is at least the intervention's."""
        return int(sum(c >= self.effect.estimate for c in self.control_means))

    @property
    def rank_p(self) -> float:
        n = self.n_controls
        return (1 + self.n_beating) / (1 + n) if n >= 2 else float("nan")

    @property
    def controls_match(self) -> bool:
        """True when the controls are not beaten: the excess's CI reaches 0, or the rank p exceeds 0.05."""
        rank_p = self.rank_p
        return not self.excess.ci_low > 0 or (np.isfinite(rank_p) and rank_p > 0.05)

    def decision(self, *, cannot_test: str | None = None, cannot_reject: str | None = None) -> Decision:
        """The verdict (see the module docstring); ``cannot_test`` (a failed precondition) makes it inconclusive
        whatever the numbers (the SESOI may then be NaN, e.g. a fraction of a gap that was not established)."""
        if cannot_test:
            return Decision(INCONCLUSIVE, f"{cannot_test}; the effect {self.effect.text()} cannot decide the claim")
        d1 = decide(self.effect, self.sesoi, cannot_reject=cannot_reject, units=UNITS)
        if d1.verdict != SUPPORTED:
            return d1
        d2 = decide(self.excess, self.sesoi, cannot_reject=cannot_reject, units=UNITS)
        beyond = f"beyond the controls (excess {self.excess.text()})"
        if d2.verdict == NOT_SUPPORTED:
            return Decision(NOT_SUPPORTED, f"the controls do as much: {d2.reason}")
        if d2.verdict == INCONCLUSIVE:
            return Decision(INCONCLUSIVE, f"the effect {self.effect.text()} is shown but not {beyond}: the CI "
                                          "includes both 0 and the SESOI")
        rank_p = self.rank_p
        if np.isfinite(rank_p) and rank_p > 0.05:
            return Decision(INCONCLUSIVE, f"{self.n_beating} of {self.n_controls} controls do as much (rank p "
                                          f"{rank_p:.3f})")
        rank = f", rank p {rank_p:.3f} among {self.n_controls} controls" if np.isfinite(rank_p) else ""
        return Decision(SUPPORTED, f"the effect {self.effect.text()} and its excess over the controls "
                                   f"{self.excess.text()} exclude 0 (SESOI {self.sesoi:g} {UNITS}){rank}")

    def numbers(self) -> dict[str, Any]:
        c = np.asarray(self.control_means, float)
        out = {"effect": self.effect.estimate, "effect_ci_low": self.effect.ci_low,
               "effect_ci_high": self.effect.ci_high, "excess": self.excess.estimate,
               "excess_ci_low": self.excess.ci_low, "excess_ci_high": self.excess.ci_high, "sesoi": self.sesoi,
               "control_mean": float(c.mean()) if len(c) else float("nan"),
               "control_max": float(c.max()) if len(c) else float("nan"), "rank_p": self.rank_p,
               "n_controls": self.n_controls, "n_beating": self.n_beating, "n_questions": self.n_questions,
               "controls_match": self.controls_match}
        for kind in dict.fromkeys(self.control_kinds):
            sel = c[[k == kind for k in self.control_kinds]]
            out[f"{kind}_control_mean"], out[f"{kind}_control_max"] = float(sel.mean()), float(sel.max())
        return out

    def controls_text(self) -> str:
        """``20 controls: mean +0.010, max +0.040 (rank p 0.048)``."""
        n = self.numbers()
        rank = f", rank p {n['rank_p']:.3f}" if np.isfinite(n["rank_p"]) else ""
        return (f"{self.n_controls} control(s): mean {n['control_mean']:+.3f}, max {n['control_max']:+.3f}{rank}; "
                f"excess over their mean {self.excess.text()}")
