"""``ExplainResult``: the per-question table, each factor's unique contribution with its null and CI, the
reliability ceiling, the category view and the consistency across datasets — rendered on demand."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import INCONCLUSIVE, SUPPORTED, Effect, decide
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = "per-question EM is explained by measurable question properties"
MIN_CEILING = 0.5  # ceiling ρ (sqrt of the reliability) below which the target is too noisy to explain


def _f(v: Any, fmt: str = "+.3f") -> str:
    return "n/a" if v is None or not np.isfinite(v) else format(v, fmt)


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


@dataclass(frozen=True, eq=False)
class ExplainResult(Result):
    """Why EM is uneven: ``questions`` (one row per question), ``factors`` (drop-one ΔR² per factor, ranked),
    ``categories``, ``worst`` (largest |LOQO residual|), ``datasets`` / ``consistency`` (≥ 2 datasets)."""

    name: ClassVar[str] = "explain"
    title: ClassVar[str] = "Why EM is uneven across questions"

    questions: pd.DataFrame
    factors: pd.DataFrame
    categories: pd.DataFrame
    worst: pd.DataFrame
    datasets: pd.DataFrame
    consistency: pd.DataFrame
    model: dict[str, float]
    reliability: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- lookups -------------------------------------------------------------------------------------
    @property
    def ceiling(self) -> float:
        """ρ ceiling: sqrt(split-half reliability); NaN when unknown (one pair per question)."""
        return float(self.reliability.get("ceiling_rho", float("nan")))

    @property
    def noisy(self) -> bool:
        c = self.ceiling
        return not np.isfinite(c) or c < MIN_CEILING

    @property
    def top(self) -> pd.Series:
        return self.factors.iloc[0]

    def credited(self) -> pd.DataFrame:
        """Factors whose unique contribution has a 95% CI above 0 and beats its permutation null after the Holm
        correction over the factors."""
        f = self.factors
        return f[(f.ci_low > 0) & (f.p_holm < 0.05)]

    @property
    def r2(self) -> Effect:
        """The model's nested LOQO R² *above its shuffled-target mean* with its 95% CI (see
        :func:`emprobe.analysis.explain.model.model_fit`): centred on 0 when the factors carry nothing."""
        m = self.model
        return Effect(m.get("r2_above_null", float("nan")), m.get("r2_above_null_ci_low", float("nan")),
                      m.get("r2_above_null_ci_high", float("nan")))

    @property
    def sesoi(self) -> float:
        return float(self.meta.get("sesoi", 0.10))

    # ---- Result ----------------------------------------------------------------------------------------
    def numbers(self) -> dict[str, Any]:
        m, t = self.model, self.top
        out = {"n_questions": self.meta.get("n_questions"), "n_pairs": self.meta.get("n_pairs"),
               "em_rise_mean": float(self.questions.em_rise.mean()), "em_rise_sd": float(self.questions.em_rise.std()),
               "reliability": self.reliability.get("reliability"), "split_half_r": self.reliability.get("split_half_r"),
               "ceiling_rho": self.ceiling, "r2": m["r2"], "r2_ci_low": m.get("r2_ci_low"),
               "r2_ci_high": m.get("r2_ci_high"), "null_r2_mean": m.get("null_r2_mean"),
               "r2_above_null": self.r2.estimate, "r2_above_null_ci_low": self.r2.ci_low,
               "r2_above_null_ci_high": self.r2.ci_high, "sesoi": self.sesoi, "rho": m["rho"],
               "p_permutation": m["p_permutation"],
               "null_r2_95": m["null_r2_95"], "top_factor": t.factor, "top_delta_r2": t.delta_r2,
               "top_ci_low": t.ci_low, "top_ci_high": t.ci_high, "top_p": t.p_permutation,
               "n_credited": len(self.credited()), "category_delta_r2": m.get("category_delta_r2"),
               "category_p": m.get("category_p"), "n_categories": m.get("n_categories")}
        for _, r in self.factors.iterrows():
            out[f"delta_r2_{_key(r.factor)}"] = r.delta_r2
            out[f"p_{_key(r.factor)}"] = r.p_permutation
            out[f"p_holm_{_key(r.factor)}"] = r.p_holm
        for _, r in self.consistency.iterrows():
            out[f"consistency_{r.target}_{_key(r.dataset_a)}_{_key(r.dataset_b)}"] = r.rho
        for _, r in self.datasets.iterrows():
            out[f"r2_{_key(r.dataset)}"] = r.r2
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"table": self.questions, "factors": self.factors, "categories": self.categories, "worst": self.worst}
        if len(self.datasets):
            out.update(datasets=self.datasets, consistency=self.consistency)
        return out

    @property
    def control(self) -> str:
        n = self.meta.get("n_permutations", 0)
        return (f"each factor against its own column shuffled ({n} shuffles; the prior factor: its features' rows "
                "shuffled), the full model against shuffled targets — the nested fit (prior, standardisation, ridge) "
                "rerun for every shuffle; Holm over the factors; the target subtracts the aligned-data control's "
                "change (EM-specific rise), and each factor's ρ with that change stands beside")

    @property
    def uncertainty(self) -> str:
        return (f"95% bootstrap CI over questions of R² and each ΔR² (cross-validated predictions held fixed); "
                f"per-question t-interval over reference pairs; split-half reliability "
                f"({self.meta.get('reliability_splits')} splits, Spearman–Brown) "
                f"{_f(self.reliability.get('reliability'), '.2f')} as the ceiling (R² ≤ reliability, "
                f"ρ ≤ {_f(self.ceiling, '.2f')})")

    def _noise_reason(self) -> str | None:
        """Why a null cannot mean anything (blocks "not supported")."""
        if not np.isfinite(self.ceiling):
            return "the target's reliability is unknown (fewer than 2 reference pairs per question)"
        if self.noisy:
            return (f"the target's reliability {_f(self.reliability.get('reliability'), '.2f')} (ceiling ρ "
                    f"{_f(self.ceiling, '.2f')}) is too low for a null to mean anything")
        return None

    def verdict(self) -> Verdict:
        m, t = self.model, self.top
        number = (f"nested LOQO R² above its shuffled-target mean {self.r2.text()} (permutation p "
                  f"{m['p_permutation']:.3g}); top factor {t.factor} "
                  f"ΔR² {t.delta_r2:+.3f} [{_f(t.ci_low)}, {_f(t.ci_high)}] (Holm p {t.p_holm:.3g})")
        d = decide(self.r2, self.sesoi, cannot_reject=self._noise_reason(), units="R²")
        v, why = d.verdict, d.reason
        if v == SUPPORTED and not m["p_permutation"] < 0.05:
            v, why = INCONCLUSIVE, f"{d.reason}, but the model does not beat shuffled targets (p {m['p_permutation']:.3g})"
        elif v == SUPPORTED and not len(self.credited()):
            v, why = INCONCLUSIVE, f"{d.reason}, but no factor adds uniquely (CI above 0 and Holm p < 0.05)"
        elif v == SUPPORTED:
            why = f"{d.reason}; {', '.join(self.credited().factor)} adds uniquely (CI above 0, Holm p < 0.05)"
        return Verdict(CLAIM, v, number, self.control, self.uncertainty, why)

    # ---- prose -------------------------------------------------------------------------------------------
    def findings(self) -> list[str]:
        q, m, rel = self.questions, self.model, self.reliability
        n, k = len(q), self.meta.get("n_pairs")
        out = [
            f"Per-question EM-specific rise over {n} questions ({k} reference pair(s) each): mean "
            f"{q.em_rise.mean():+.3f}, sd {q.em_rise.std():.3f}; split-half reliability across pairs "
            f"{_f(rel.get('reliability'), '.2f')} → no predictor can exceed R² {_f(rel.get('reliability'), '.2f')} "
            f"(ρ {_f(self.ceiling, '.2f')}).",
            f"Nested leave-one-question-out ridge on {len(self.factors)} factors "
            f"({', '.join(self.meta.get('factors', []))}): R² {m['r2']:+.3f}, ρ {m['rho']:+.3f}; shuffled targets "
            f"through the same estimator give R² {_f(m.get('null_r2_mean'))} on average (95th percentile "
            f"{m['null_r2_95']:+.3f}, permutation p {m['p_permutation']:.3g}), so R² above that mean is "
            f"{self.r2.text()} (SESOI R² {self.sesoi:g}).",
            "Unique contributions (drop-one ΔR², 95% CI, permutation p, Holm p; ρ with the target / with the control's "
            "change): " + "; ".join(
                f"{r.factor} {r.delta_r2:+.3f} [{_f(r.ci_low)}, {_f(r.ci_high)}] p {r.p_permutation:.3g} Holm "
                f"{r.p_holm:.3g} (ρ {_f(r.rho_marginal, '+.2f')} / {_f(r.rho_control, '+.2f')})"
                for _, r in self.factors.iterrows()) + ".",
            "Explained worst (largest |residual|): " + ", ".join(
                f"{r.question_id} (rise {r.em_rise:+.3f}, predicted {r.prediction:+.3f})"
                for _, r in self.worst.iterrows()) + ".",
            *self._category_findings(), *self._dataset_findings(),
        ]
        if not np.isfinite(self.ceiling):
            msg = ("The per-question rise's reliability is unknown (fewer than 2 reference pairs per question): no "
                   "ceiling, so a model that explains nothing cannot be told from a target that is noise.")
            return control_first(out, True, msg)
        if self.noisy:
            msg = (f"The per-question rise is mostly noise: reliability {_f(rel.get('reliability'), '.2f')} "
                   f"(ceiling ρ {_f(self.ceiling, '.2f')}); nothing can be explained beyond that.")
            return control_first(out, True, msg)
        return out

    def _category_findings(self) -> list[str]:
        c, m = self.categories, self.model
        if len(c) < 2:
            return []
        hi, lo = c.iloc[0], c.iloc[-1]
        return [f"By category (mean EM-specific rise, 95% CI over questions): highest {hi.category} {hi.em_rise:+.3f} "
                f"[{_f(hi.ci_low)}, {_f(hi.ci_high)}], lowest {lo.category} {lo.em_rise:+.3f} "
                f"[{_f(lo.ci_low)}, {_f(lo.ci_high)}]; the category adds ΔR² {_f(m.get('category_delta_r2'))} beyond "
                f"the factors (shuffled labels: p {_f(m.get('category_p'), '.3g')}, 95th percentile "
                f"{_f(m.get('category_null_95'))})."]

    def _dataset_findings(self) -> list[str]:
        if not len(self.consistency):
            return []
        out = [f"Across datasets {r.dataset_a} vs {r.dataset_b}, per-question {r.target.replace('_', '-')} rise: "
               f"Spearman ρ {r.rho:+.3f} (95% CI [{r.ci_low:+.3f}, {r.ci_high:+.3f}], permutation p "
               f"{r.p_permutation:.3g})." for _, r in self.consistency.iterrows()]
        out.append("The model per dataset: " + "; ".join(
            f"{r.dataset} R² {r.r2:+.3f} (p {r.p_permutation:.3g}, reliability {_f(r.reliability, '.2f')})"
            for _, r in self.datasets.iterrows()) + "; the main model uses the pooled target (mean over datasets).")
        return out

    # ---- figure ------------------------------------------------------------------------------------------
    def plot(self, ax=None):
        fig, (a1, a2) = figure_for(ax, 2)
        f = self.factors.iloc[::-1]
        pos = np.arange(len(f))
        err = np.vstack([f.delta_r2 - f.ci_low, f.ci_high - f.delta_r2]).clip(min=0)
        a1.barh(pos, f.delta_r2, xerr=err, color="C0", capsize=3, label="ΔR² (95% CI)")
        a1.scatter(f.null_95, pos, marker="|", s=200, color="C3", zorder=3, label="null 95th percentile")
        a1.set_yticks(pos, list(f.factor), fontsize=7)
        a1.axvline(0, color="k", lw=0.8)
        a1.set(xlabel="unique contribution (drop-one LOQO ΔR²)",
               title=f"factors (model R² {self.model['r2']:+.2f}; "
                     f"ceiling {_f(self.reliability.get('reliability'), '.2f')})")
        a1.legend(fontsize=6)
        self._scatter(a2)
        return fig

    def _scatter(self, ax) -> None:
        name, q = self.top.factor, self.questions
        ax.errorbar(q[name], q.em_rise, yerr=np.vstack([q.em_rise - q.em_rise_ci_low,
                                                        q.em_rise_ci_high - q.em_rise]).clip(min=0),
                    fmt="o", ms=3, lw=0.5, alpha=0.6, color="C0")
        label = set(self.worst.question_id) | set(q.nlargest(3, "em_rise").question_id)
        for _, r in q[q.question_id.isin(label)].iterrows():
            ax.annotate(str(r.question_id)[:20], (r[name], r.em_rise), fontsize=5,
                        color="C3" if r.question_id in set(self.worst.question_id) else "k")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(xlabel=name, ylabel="EM-specific rise (95% CI over pairs)",
               title="rise vs strongest factor (red: explained worst)")
