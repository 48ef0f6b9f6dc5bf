"""``PriorsResult``: the predictors of per-question EM, their nulls, the controls (headroom, topic), the calibrated
effect and the reliability ceiling.

Verdict (the one rule, :func:`~emprobe.analysis.stats.verdict.decide`): the decision features' (partial) ρ beyond
the controls, on the scale of the true correlation (simulated through the same estimator on the real features),
against the SESOI: supported when its CI excludes 0 (and reaches the SESOI); not supported when the CI lies below
the SESOI, unless the target's reliability (lower 95 % bound) caps any correlation below the SESOI or is unknown;
inconclusive otherwise, with the simulated power at the SESOI — and inconclusive whatever the effect when the
target's measured reliability is not shown to exceed 0 (its lower 95 % bound at 0: no per-question signal to predict).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import Decision, Effect, decide
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = ("prompt-only activations before fine-tuning predict fine-grained (per-question) EM beyond the "
         "controls (the base margin's headroom and the question's topic)")
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
    sesoi: float  # the smallest true ρ of interest (beyond the controls), declared before looking
    effect: dict[str, float]  # observed statistic; true-ρ estimate, ci_low, ci_high; power at the SESOI; detectable ρ
    calibration: pd.DataFrame  # true_rho, q025, median, q975, power: the estimator's simulated behaviour
    controls: tuple[str, ...] = ()  # "base margin", "category": partialled out of the decisive statistic
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
        """The reliability's ceiling on any correlation at its lower 95 % bound (NaN when unknown)."""
        return float(self.reliability.get("ceiling_rho_low", float("nan")))

    @property
    def decisive(self):
        """The table row behind the decisive statistic (``activations+controls``, or ``activations`` without)."""
        row = self.row("activations+controls", self.decision_features)
        return self.act if row is None else row

    def _get(self, row, col: str) -> float:
        return float(row[col]) if row is not None and col in row and pd.notna(row[col]) else float("nan")

    # ---- Result ----------------------------------------------------------------------------------
    def numbers(self) -> dict[str, Any]:
        a, h, c = self.act, self.row("headroom"), self.row("category")
        both, d = self.row("activations+controls", self.decision_features), self.row("direction")
        out = {"n_questions": self.n_questions, "target_kind": self.target_kind, "target": self.primary,
               "features": self.decision_features, "sesoi_rho": self.sesoi,
               **{f"effect_{k}": v for k, v in self.effect.items()}}
        for col in ("spearman_rho", "r2", "p_permutation", "null_rho_mean", "null_rho_95", "random_rho_mean",
                    "random_rho_sd", "random_rho_95"):
            out[col] = self._get(a, col)
        out.update(headroom_rho=self._get(h, "spearman_rho"), headroom_p=self._get(h, "p_permutation"),
                   headroom_raw_rho=self._get(h, "raw_rho"), headroom_null_rho_mean=self._get(h, "null_rho_mean"),
                   category_rho=self._get(c, "spearman_rho"), category_r2=self._get(c, "r2"),
                   category_p=self._get(c, "p_permutation"), both_rho=self._get(both, "spearman_rho"),
                   both_p=self._get(both, "p_permutation"), partial_rho=self._get(both, "partial_rho"),
                   partial_p=self._get(both, "partial_p"), direction_rho=self._get(d, "spearman_rho"),
                   direction_p=self._get(d, "p_permutation"), direction_raw_rho=self._get(d, "raw_rho"),
                   raw_target_rho=self._get(self.row("activations", self.decision_features, "raw"), "spearman_rho"),
                   control_rise_rho=self.control_rise_rho)
        out.update({k: self.reliability.get(k) for k in ("reliability", "split_half_r", "ceiling_rho", "reliability_ci_low",
                                                          "reliability_ci_high", "ceiling_rho_low")})
        for _, r in self.table[(self.table.predictor == "activations") & (self.table.target == self.primary)].iterrows():
            out[f"rho_{re.sub(r'[^a-z0-9]+', '_', str(r.features).lower()).strip('_')}"] = float(r.spearman_rho)
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, "predictions": self.predictions, "calibration": self.calibration}

    @property
    def control(self) -> str:
        parts = [f"{label} alone (ρ = {r.spearman_rho:.3f})" for label, r in
                 (("the base margin (headroom)", self.row("headroom")), ("the question's category (topic)",
                                                                         self.row("category"))) if r is not None]
        base = ("; ".join(parts) + " on the same folds, partialled out of the decisive ρ") if parts else \
            "no headroom or topic control given"
        return (f"{base}; shuffled targets through the same LOQO ridge (null mean ρ = "
                f"{self._get(self.act, 'null_rho_mean'):.3f})")

    @property
    def uncertainty(self) -> str:
        e, rel = self.effect, self.reliability
        r = (f"reliability {rel['reliability']:.2f} (95% CI [{rel['reliability_ci_low']:.2f}, "
             f"{rel['reliability_ci_high']:.2f}]) → ceiling ρ ≥ {self.ceiling:.2f}"
             if np.isfinite(self.ceiling) else "reliability unknown")
        return (f"95% CI on the true-ρ scale from {int(e['n_sim'])} simulated targets per ρ through the same estimator "
                f"on the real features; simulated power at the SESOI {e['power']:.0%} ({self.n_questions} questions); "
                f"permutation p over {int(self._get(self.act, 'n_permutations'))} shuffles; {r}")

    def decision(self) -> Decision:
        e = self.effect
        eff = Effect(e["estimate"], e["ci_low"], e["ci_high"])
        if not np.isfinite(self.ceiling):
            block = ("the target's reliability is unknown (no per-pair table): a small ρ cannot be told from a noisy "
                     "target")
        elif self.ceiling < self.sesoi:
            block = (f"reliability too low: at its lower 95% bound ({self.reliability['reliability_ci_low']:.2f}) no "
                     f"predictor can exceed ρ {self.ceiling:.2f} < SESOI {self.sesoi:g}")
        else:
            block = None
        det = e["detectable_rho"]
        wide = (f"too few questions ({self.n_questions}): simulated power at the SESOI {e['power']:.0%}"
                + (f", 80% power from ρ {det:.2f}" if np.isfinite(det) else ", 80% power at no ρ < 0.95"))
        return decide(eff, self.sesoi, cannot_test=self._no_signal(), cannot_reject=block, wide=wide, fmt="+.2f")

    def _no_signal(self) -> str | None:
        """Why the test cannot be made: the target's measured reliability is not shown to exceed 0 (its lower 95 %
        bound is 0), so no per-question variation is established for any predictor to predict — an apparent
        prediction of such a target is noise or estimator bias, not support (``None`` when reliability is
        unknown or shown)."""
        rel, low = (float(self.reliability.get(k, float("nan"))) for k in ("reliability", "reliability_ci_low"))
        if not np.isfinite(low) or low > 0:
            return None
        return (f"no per-question signal established: the target's split-half reliability {rel:.2f} has a 95% CI "
                f"reaching {low:.2f} (its per-question differences may be noise)")

    def verdict(self) -> Verdict:
        d, e = self.decision(), self.effect
        given = f" | {', '.join(self.controls)}" if self.controls else ""
        number = (f"{'partial ' if self.controls else ''}ρ{given} = {e['observed']:.3f} → true ρ {e['estimate']:+.2f} "
                  f"(95% CI [{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]); SESOI ρ {self.sesoi:g}")
        return Verdict(CLAIM, d.verdict, number, self.control, self.uncertainty, d.reason)

    def findings(self) -> list[str]:
        a = self.act
        rho = self._get(a, "spearman_rho")
        what = f"the {TARGET_NAMES.get(self.primary, self.primary)} ({self.target_kind})"
        v = self.verdict()
        out = [f"Claim 2 is {v.verdict}: {v.number} — {v.reason}.",
               f"Leave-one-question-out ridge on '{self.decision_features}' activations predicts {what} of "
               f"{self.n_questions} questions with Spearman ρ = {rho:.3f} (R² = {self._get(a, 'r2'):.3f}, "
               f"permutation p = {self._get(a, 'p_permutation'):.3g}); the same estimator on shuffled targets gives "
               f"mean ρ = {self._get(a, 'null_rho_mean'):.3f} (95th percentile {self._get(a, 'null_rho_95'):.3f})"
               + (f"; random features of equal dimension (a description, not a test) "
                  f"{self._get(a, 'random_rho_mean'):.3f} ± {self._get(a, 'random_rho_sd'):.3f}."
                  if np.isfinite(self._get(a, "random_rho_mean")) else "."), *self._control_findings()]
        e = self.effect
        det = e["detectable_rho"]
        out.append(f"Simulated through the same estimator on these features (planted true ρ, {int(e['n_sim'])} targets "
                   f"each): the observed statistic {e['observed']:.3f} means a true ρ of {e['estimate']:+.2f} (95% CI "
                   f"[{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]); power at the SESOI ρ {self.sesoi:g} is "
                   f"{e['power']:.0%}" + (f"; 80% power from ρ {det:.2f}." if np.isfinite(det) else
                                          "; no ρ < 0.95 reaches 80% power."))
        out += self._detail_findings()
        r2 = self._get(a, "r2")
        beaten = [(label, r) for label, r in (("Headroom alone (the base margin)", self.row("headroom")),
                                              ("Topic alone (the question's category)", self.row("category")))
                  if r is not None and (r.spearman_rho >= rho or r.r2 >= r2)]
        msg = (f"{beaten[0][0]} predicts {what} at least as well as the activations: ρ = "
               f"{beaten[0][1].spearman_rho:.3f} vs {rho:.3f}, R² = {beaten[0][1].r2:.3f} vs {r2:.3f}."
               if beaten else "")
        return control_first(out, bool(beaten), msg)

    def _control_findings(self) -> list[str]:
        h, c, both = self.row("headroom"), self.row("category"), self.row("controls")
        parts = []
        if h is not None:
            parts.append(f"base margin only ρ = {h.spearman_rho:.3f} (p = {h.p_permutation:.3g}; raw base margin vs "
                         f"target ρ = {h.raw_rho:.3f})")
        if c is not None:
            parts.append(f"category only ρ = {c.spearman_rho:.3f} (R² = {c.r2:.3f}, p = {c.p_permutation:.3g}; "
                         f"{self.meta.get('n_categories', '?')} categories)")
        if both is not None:
            parts.append(f"both ρ = {both.spearman_rho:.3f}")
        if not parts:
            return ["No control given (no base margin, no categories): the decisive ρ is the plain LOQO ρ."]
        d = self.decisive
        return [f"Controls on the same folds: {'; '.join(parts)}; activations + controls ρ = {d.spearman_rho:.3f}; "
                f"partial ρ of its prediction with the target given {', '.join(self.controls)} = "
                f"{self._get(d, 'partial_rho'):.3f} (Freedman–Lane p = {self._get(d, 'partial_p'):.3g})."]

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
        if str(rel.get("of", "")).startswith("given"):
            out.append(f"Target reliability given as {rel['reliability']:.3f} (taken as exact) → ceiling ρ "
                       f"{rel['ceiling_rho']:.3f}.")
        elif np.isfinite(rel.get("reliability", float("nan"))):
            out.append(f"Target reliability ({rel['of']}; split-half over reference pairs, Spearman–Brown, "
                       f"{rel['n_questions']} questions × {rel['pairs_per_question']:.0f} pairs): {rel['reliability']:.3f}"
                       f" (95% CI over questions [{rel['reliability_ci_low']:.3f}, {rel['reliability_ci_high']:.3f}]) "
                       f"→ ceiling ρ ≈ {rel['ceiling_rho']:.3f}, ≥ {rel['ceiling_rho_low']:.3f} at the lower bound.")
        else:
            out.append(f"Target reliability not measured: {rel.get('of', 'no per-pair table')}.")
        return out

    def plot(self, ax=None):
        fig, (ax1, ax2, ax3) = figure_for(ax, 3)
        t = self.table[self.table.target == self.primary].reset_index(drop=True)
        labels = [f"{r.predictor}\n{r.features}"[:40] for _, r in t.iterrows()]
        xs = np.arange(len(t))
        ax1.bar(xs, t.spearman_rho, color="tab:blue", label="LOQO ρ")
        ax1.scatter(xs, t.null_rho_mean, color="k", marker="_", s=200, label="null mean (same estimator)")
        ax1.scatter(xs, t.null_rho_95, color="grey", marker="v", s=20, label="null 95th pct")
        if np.isfinite(self.ceiling):
            ax1.axhline(self.ceiling, ls=":", color="tab:green", lw=0.8, label="reliability ceiling (lower bound)")
        ax1.axhline(0, color="grey", lw=0.6)
        ax1.set_xticks(xs, labels, fontsize=6, rotation=30, ha="right")
        ax1.set(ylabel="Spearman ρ", title=f"predictors of {self.primary} ({self.n_questions} questions)")
        ax1.legend(fontsize=6)
        c = self.calibration
        ax2.fill_between(c.true_rho, c.q025, c.q975, color="tab:blue", alpha=0.2, label="simulated 95%")
        ax2.plot(c.true_rho, c["median"], color="tab:blue", label="simulated median")
        ax2.axhline(self.effect["observed"], color="k", lw=0.8, label="observed")
        ax2.axvline(self.sesoi, color="tab:red", ls="--", lw=0.8, label="SESOI")
        ax2.set(xlabel="true ρ (planted)", ylabel="statistic", title="the estimator on these features")
        ax2.legend(fontsize=6)
        col = f"pred_{self.decision_features}"
        y = self.predictions[f"target_{self.primary}"]
        ax3.scatter(self.predictions[col], y, s=14)
        ax3.set(xlabel=f"LOQO prediction ({self.decision_features})", ylabel=self.primary,
                title=f"ρ = {self._get(self.act, 'spearman_rho'):.2f}")
        return fig
