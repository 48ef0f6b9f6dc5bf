"""``PriorsResult``: the predictors of per-question EM, their nulls, the headroom baseline and the ceiling."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = ("prompt-only activations before fine-tuning predict fine-grained (per-question) EM beyond the "
         "headroom baseline")
TARGET_NAMES = {"em_specific": "EM-specific rise (misaligned − aligned-control change)", "raw": "raw rise"}


@dataclass(frozen=True, eq=False)
class PriorsResult(Result):
    """LOQO predictors of a per-question target; rows of ``table`` per (target, features, predictor)."""

    name: ClassVar[str] = "priors"
    title: ClassVar[str] = "Priors → per-question EM"

    table: pd.DataFrame
    predictions: pd.DataFrame
    n_questions: int
    target_kind: str
    primary: str  # "em_specific" (with a control) or "raw"
    decision_features: str  # the feature set the verdict uses: "combined" when several stores are given
    reliability: dict[str, Any]
    rho_critical: float
    rho_detectable: float
    control_rise_rho: float = float("nan")
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- lookups -------------------------------------------------------------------------------
    def row(self, predictor: str = "activations", features: str | None = None, target: str | None = None):
        """The table row of one predictor (``None`` when absent)."""
        t = self.table
        m = (t.predictor == predictor) & (t.target == (target or self.primary))
        if features is not None:
            m &= t.features == features
        return t[m].iloc[0] if m.any() else None

    @property
    def act(self):
        return self.row("activations", self.decision_features)

    @property
    def ceiling(self) -> float:
        c = self.reliability.get("ceiling_rho", float("nan"))
        return float(c) if np.isfinite(c) else 1.0

    def _get(self, row, col: str) -> float:
        return float(row[col]) if row is not None and col in row and pd.notna(row[col]) else float("nan")

    # ---- Result ----------------------------------------------------------------------------------
    def numbers(self) -> dict[str, Any]:
        a, h = self.act, self.row("headroom")
        both, d = self.row("activations+headroom", self.decision_features), self.row("direction")
        out = {"n_questions": self.n_questions, "target_kind": self.target_kind, "target": self.primary,
               "features": self.decision_features}
        for col in ("spearman_rho", "r2", "p_permutation", "null_rho_mean", "null_rho_95", "random_rho_mean",
                    "random_rho_sd", "random_rho_95", "p_random", "partial_rho", "partial_p"):
            out[col] = self._get(a, col)
        out.update(headroom_rho=self._get(h, "spearman_rho"), headroom_p=self._get(h, "p_permutation"),
                   headroom_raw_rho=self._get(h, "raw_rho"), headroom_null_rho_mean=self._get(h, "null_rho_mean"),
                   both_rho=self._get(both, "spearman_rho"), both_p=self._get(both, "p_permutation"),
                   direction_rho=self._get(d, "spearman_rho"), direction_p=self._get(d, "p_permutation"),
                   direction_raw_rho=self._get(d, "raw_rho"),
                   raw_target_rho=self._get(self.row("activations", self.decision_features, "raw"), "spearman_rho"),
                   control_rise_rho=self.control_rise_rho, reliability=self.reliability.get("reliability"),
                   split_half_r=self.reliability.get("split_half_r"), ceiling_rho=self.reliability.get("ceiling_rho"),
                   rho_critical=self.rho_critical, rho_detectable=self.rho_detectable)
        for _, r in self.table[(self.table.predictor == "activations") & (self.table.target == self.primary)].iterrows():
            out[f"rho_{re.sub(r'[^a-z0-9]+', '_', str(r.features).lower()).strip('_')}"] = float(r.spearman_rho)
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, "predictions": self.predictions}

    @property
    def control(self) -> str:
        h = self.row("headroom")
        base = f"the base margin alone (headroom, ρ = {h.spearman_rho:.3f})" if h is not None else \
            "no headroom baseline (no base margin given)"
        return (f"{base}; shuffled targets and random features of equal dimension through the same LOQO ridge "
                f"(null mean ρ = {self._get(self.act, 'null_rho_mean'):.3f})")

    @property
    def uncertainty(self) -> str:
        rel = self.reliability.get("reliability", float("nan"))
        ceil = f"reliability {rel:.2f} → ceiling ρ {self.ceiling:.2f}" if np.isfinite(rel) else "reliability unknown"
        return (f"permutation p over {int(self._get(self.act, 'n_permutations'))} shuffles; with "
                f"{self.n_questions} questions the smallest ρ detectable at p < 0.05 (one-sided, 80% power) is "
                f"{self.rho_detectable:.2f} (critical ρ {self.rho_critical:.2f}); {ceil}")

    def verdict(self) -> Verdict:
        a = self.act
        p, pp = self._get(a, "p_permutation"), self._get(a, "partial_p")
        beats, adds = p < 0.05, pp < 0.05
        powered = self.rho_detectable < self.ceiling
        if beats and adds:
            v, why = "supported", "beats its own null and adds to the base margin (partial p < 0.05)"
        elif powered and not (beats and np.isnan(pp)):
            v = "not supported"
            why = ("does not beat its own null" if not beats else "adds nothing to the base margin (partial p ≥ 0.05)") + \
                f", and {self.n_questions} questions detect ρ ≥ {self.rho_detectable:.2f} < ceiling {self.ceiling:.2f}"
        else:
            v = "inconclusive"
            why = "no base-margin baseline given" if beats and np.isnan(pp) else \
                (f"the set cannot detect ρ below the target's ceiling: detectable ρ {self.rho_detectable:.2f} "
                 f"(n = {self.n_questions}) ≥ ceiling {self.ceiling:.2f} (too few questions or too noisy a target)")
        number = (f"ρ = {self._get(a, 'spearman_rho'):.3f} (p = {p:.3g}); partial ρ | base margin = "
                  f"{self._get(a, 'partial_rho'):.3f} (p = {pp:.3g})")
        return Verdict(CLAIM, v, number, self.control, self.uncertainty, why)

    def findings(self) -> list[str]:
        a, h = self.act, self.row("headroom")
        rho = self._get(a, "spearman_rho")
        what = f"the {TARGET_NAMES.get(self.primary, self.primary)} ({self.target_kind})"
        out = [f"Leave-one-question-out ridge on '{self.decision_features}' activations predicts {what} of "
               f"{self.n_questions} questions with Spearman ρ = {rho:.3f} (R² = {self._get(a, 'r2'):.3f}, "
               f"permutation p = {self._get(a, 'p_permutation'):.3g}); the same estimator on shuffled targets gives "
               f"mean ρ = {self._get(a, 'null_rho_mean'):.3f} (95th percentile {self._get(a, 'null_rho_95'):.3f}), "
               f"on random features of equal dimension {self._get(a, 'random_rho_mean'):.3f} ± "
               f"{self._get(a, 'random_rho_sd'):.3f}."]
        if h is not None:
            both = self.row("activations+headroom", self.decision_features)
            out.append(f"Headroom baseline on the same folds: base margin only ρ = {h.spearman_rho:.3f} (p = "
                       f"{h.p_permutation:.3g}; raw base margin vs target ρ = {h.raw_rho:.3f}); activations + base "
                       f"margin ρ = {both.spearman_rho:.3f}; partial "
                       f"correlation of the activation prediction with the target given the base margin = "
                       f"{self._get(a, 'partial_rho'):.3f} (Freedman–Lane p = {self._get(a, 'partial_p'):.3g}).")
        out += self._detail_findings()
        beaten = h is not None and h.spearman_rho >= rho
        msg = (f"Headroom alone (the base margin) predicts {what} at least as well as the activations: ρ = "
               f"{h.spearman_rho:.3f} vs {rho:.3f}." if beaten else "")
        return control_first(out, beaten, msg)

    def _detail_findings(self) -> list[str]:
        out = []
        sets = self.table[(self.table.predictor == "activations") & (self.table.target == self.primary)]
        if len(sets) > 1:
            out.append("Per feature set: " + "; ".join(f"{r.features} ρ = {r.spearman_rho:.3f} (p = "
                                                       f"{r.p_permutation:.3g})" for _, r in sets.iterrows()) + ".")
        d = self.row("direction")
        if d is not None:
            out.append(f"Single-direction predictor ({d.features}): LOQO ρ = {d.spearman_rho:.3f} (p = "
                       f"{d.p_permutation:.3g}); raw projection vs target ρ = {d.raw_rho:.3f}.")
        if self.primary != "raw":
            r = self.row("activations", self.decision_features, "raw")
            out.append(f"On the raw rise (no control adjustment) the activations give ρ = {r.spearman_rho:.3f} "
                       f"(p = {r.p_permutation:.3g}); the aligned control's own change correlates with the raw rise "
                       f"at ρ = {self.control_rise_rho:.3f}.")
        rel = self.reliability
        if np.isfinite(rel.get("reliability", float("nan"))):
            out.append(f"Target reliability ({rel['of']}; split-half over reference pairs, Spearman–Brown, "
                       f"{rel['n_questions']} questions × {rel['pairs_per_question']:.0f} pairs): {rel['reliability']:.3f}"
                       f" → ceiling ρ ≈ {rel['ceiling_rho']:.3f}.")
        else:
            out.append(f"Target reliability not measured: {rel.get('of', 'no per-pair table')}.")
        out.append(f"With {self.n_questions} questions the smallest ρ detectable at p < 0.05 (one-sided) is "
                   f"{self.rho_detectable:.3f} at 80% power (critical ρ {self.rho_critical:.3f}).")
        return out

    def plot(self, ax=None):
        fig, (ax1, ax2) = figure_for(ax, 2)
        t = self.table[self.table.target == self.primary].reset_index(drop=True)
        labels = [f"{r.predictor}\n{r.features}"[:40] for _, r in t.iterrows()]
        xs = np.arange(len(t))
        ax1.bar(xs, t.spearman_rho, color="tab:blue", label="LOQO ρ")
        ax1.scatter(xs, t.null_rho_mean, color="k", marker="_", s=200, label="null mean (same estimator)")
        ax1.scatter(xs, t.null_rho_95, color="grey", marker="v", s=20, label="null 95th pct")
        ax1.axhline(self.ceiling, ls=":", color="tab:green", lw=0.8, label="reliability ceiling")
        ax1.axhline(0, color="grey", lw=0.6)
        ax1.set_xticks(xs, labels, fontsize=6, rotation=30, ha="right")
        ax1.set(ylabel="Spearman ρ", title=f"predictors of {self.primary} ({self.n_questions} questions)")
        ax1.legend(fontsize=6)
        col = f"pred_{self.decision_features}"
        y = self.predictions[f"target_{self.primary}"]
        ax2.scatter(self.predictions[col], y, s=14)
        ax2.set(xlabel=f"LOQO prediction ({self.decision_features})", ylabel=self.primary,
                title=f"ρ = {self._get(self.act, 'spearman_rho'):.2f}")
        return fig
