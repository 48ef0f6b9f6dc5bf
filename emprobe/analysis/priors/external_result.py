"""``ExternalPriorsResult``: claim 2 on an external target (see :mod:`emprobe.analysis.priors.external`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.priors.cv import nadeau_bengio
from emprobe.analysis.stats.verdict import Decision, Effect, decide
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = "Prompt activations before fine-tuning predict per-question EM beyond topic and wording"
ORDER = {"not supported": 0, "inconclusive": 1, "supported": 2}
MAX_MISS = 0.1  # planted SESOI effects called "not supported" above this share: a null cannot be called


@dataclass(frozen=True, eq=False)
class ExternalPriorsResult(Result):
    """Per-fold R² of the activations and of every control on the same folds, and the permutation null."""

    fold_scores: dict[str, np.ndarray]  # predictor -> R² per fold (n_repeats * n_splits)
    question_ids: list[str]
    categories: list[str]
    target: np.ndarray
    predictions: dict[str, np.ndarray]  # predictor -> mean out-of-fold prediction per question
    null_r2: np.ndarray  # mean R² of the activations' estimator on shuffled targets
    n_splits: int
    sesoi: float
    power_miss: float = float("nan")  # share of planted SESOI effects (beyond category) called "not supported"
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "priors"
    title: ClassVar[str] = "Claim 2 on an external target: prompt activations vs topic and text"

    # ---- numbers --------------------------------------------------------------------------------------
    def r2(self, name: str) -> Effect:
        """Mean per-fold R² of a predictor (``random projections``: averaged over the draws) with its
        Nadeau–Bengio 95 % CI."""
        return nadeau_bengio(self._scores(name), self.n_splits)

    def _scores(self, name: str) -> np.ndarray:
        if name == "random projections":
            draws = [v for k, v in self.fold_scores.items() if k.startswith("random projections ")]
            return np.mean(draws, axis=0) if draws else np.full(1, np.nan)
        return self.fold_scores[name]

    def margin(self, a: str, b: str) -> Effect:
        """R²(a) − R²(b) on the same folds, Nadeau–Bengio corrected."""
        return nadeau_bengio(self._scores(a) - self._scores(b), self.n_splits)

    @property
    def p_permutation(self) -> float:
        """Add-one permutation p of the activations' mean R² over the first repeat's folds (the statistic the
        shuffled targets were scored with)."""
        obs = float(np.nanmean(self.fold_scores["activations"][:self.n_splits]))
        null = np.asarray(self.null_r2)
        return float((1 + np.sum(null >= obs)) / (1 + len(null))) if len(null) else float("nan")

    #: the margins the claim must clear: (name, model with the activations, control) on the same folds
    MARGINS: ClassVar[tuple] = (("category", "category+activations", "category"), ("text", "activations", "text"))

    def decisions(self) -> dict[str, Decision]:
        """The verdict rule on each margin the claim must clear: beyond category (category means + activations
        vs category alone, nested) and over text (activations vs TF-IDF ridge)."""
        return {c: decide(self.margin(a, b), self.sesoi, units="R²", fmt="+.3f",
                          cannot_reject=self._underpowered() if c == "category" else None)
                for c, a, b in self.MARGINS}

    def _underpowered(self) -> str | None:
        if not self.power_miss > MAX_MISS:
            return None
        return (f"a planted effect of exactly the SESOI beyond category comes out 'not supported' in "
                f"{100 * self.power_miss:.0f}% of {self.meta.get('n_power')} simulations through the same procedure "
                "(too little power to call a null)")

    def decisive(self) -> tuple[str, Decision]:
        """The weaker margin (not supported < inconclusive < supported; ties: the smaller margin)."""
        d, pairs = self.decisions(), {c: (a, b) for c, a, b in self.MARGINS}
        return min(d.items(), key=lambda kv: (ORDER[kv[1].verdict], self.margin(*pairs[kv[0]]).estimate))

    # ---- rendering ------------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        ctrl, d = self.decisive()
        a, b = {c: (a, b) for c, a, b in self.MARGINS}[ctrl]
        number = (f"R² {a} {self.r2(a).estimate:.3f} − {b} {self.r2(b).estimate:.3f} = "
                  f"{self.margin(a, b).estimate:+.3f}")
        where = "beyond category" if ctrl == "category" else "over text"
        return Verdict(CLAIM, d.verdict, number, self.control, self.uncertainty, f"{where}: {d.reason}")

    def findings(self) -> list[str]:
        v, a = self.verdict(), self.r2("activations")
        best = max(("category", "text"), key=lambda c: self.r2(c).estimate)
        beaten = self.r2(best).estimate >= a.estimate
        meta = self.meta
        out = [f"Claim 2 is {v.verdict} on {meta.get('run')} ({meta.get('score')}): {v.number}; {v.reason}."]
        rows = [f"{k} {self.r2(k).text('.3f')}" for k in ("activations", "category", "text", "random projections",
                                                          "category+activations")]
        out.append(f"R² over {len(self.target)} questions ({len(set(self.categories))} categories; mean of "
                   f"{len(self.fold_scores['activations'])} folds, Nadeau–Bengio 95% CI): " + "; ".join(rows) + ".")
        out.append(f"Margins (fold-paired): beyond category (nested) ΔR² "
                   f"{self.margin('category+activations', 'category').text('+.3f')}; activations − category "
                   f"{self.margin('activations', 'category').text('+.3f')}; activations − text "
                   f"{self.margin('activations', 'text').text('+.3f')}; activations − random projections of the "
                   f"same activations {self.margin('activations', 'random projections').text('+.3f')}.")
        null = f"{np.mean(self.null_r2):+.3f}" if len(self.null_r2) else "n/a"
        out.append(f"Activations' R² (first repeat's {self.n_splits} folds) vs {len(self.null_r2)} target shuffles "
                   f"through the same procedure: permutation p = {self.p_permutation:.3g} (null mean {null}).")
        if np.isfinite(self.power_miss):
            out.append(f"Power: a planted effect of exactly the SESOI ({self.sesoi:g} R²) beyond category comes out "
                       f"'not supported' in {100 * self.power_miss:.0f}% of {self.meta.get('n_power')} simulations "
                       "through the same procedure (" + ("too many: a null is not called" if self.power_miss > MAX_MISS
                                                         else "a null can be called") + ").")
        out.append(self._setup())
        head = (f"{best.capitalize()} alone predicts the target as well as the activations do: {best}-only R² "
                f"{self.r2(best).estimate:.3f} vs activations {a.estimate:.3f}.")
        return control_first(out, beaten, head)

    def _setup(self) -> str:
        m = self.meta
        est = (f"paper estimator (PCA on the {m.get('pca_on')} prompts, squared projections on "
               f"{m.get('n_components')} PCs, StandardScaler + Lasso, alpha by inner 5-fold CV)"
               if m.get("estimator") == "paper" else "kernel ridge on z-scored activations (penalty by leave-one-out)")
        nulls = f"; {m['n_null_target']} null target value(s) dropped" if m.get("n_null_target") else ""
        if m.get("store_out"):
            nulls += f"; activations saved to {m['store_out']} (reuse them with --features)"
        return (f"Features: {m.get('model') or m.get('features')} layer(s) {m.get('layers')} at last_prompt; {est}; "
                f"{m.get('n_splits')}-fold x {m.get('n_repeats')} repeated CV; features {m.get('seconds_features')} s, "
                f"analysis {m.get('seconds_analysis')} s{nulls}.")

    def numbers(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n_questions": len(self.target), "n_categories": len(set(self.categories)),
                               "sesoi": self.sesoi, "p_permutation": self.p_permutation, "power_miss": self.power_miss}
        for k, key in (("activations", "act"), ("category", "cat"), ("text", "text"),
                       ("random projections", "random"), ("category+activations", "cat_act")):
            e = self.r2(k)
            out.update({f"r2_{key}": e.estimate, f"r2_{key}_ci_low": e.ci_low, f"r2_{key}_ci_high": e.ci_high})
        for c in ("category", "text"):
            e = self.margin("activations", c)
            out.update({f"margin_{c}": e.estimate, f"margin_{c}_ci_low": e.ci_low, f"margin_{c}_ci_high": e.ci_high})
        b = self.margin("category+activations", "category")
        out.update({"beyond_category": b.estimate, "beyond_category_ci_low": b.ci_low,
                    "beyond_category_ci_high": b.ci_high})
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        names = ["activations", "category", "text", "random projections", "category+activations"]
        summary = pd.DataFrame([{"predictor": k, "r2": (e := self.r2(k)).estimate, "ci_low": e.ci_low,
                                 "ci_high": e.ci_high} for k in names])
        comps = [("activations", "category"), ("activations", "text"), ("category+activations", "category"),
                 ("activations", "random projections")]
        comparisons = pd.DataFrame([{"a": a, "b": b, "delta_r2": (e := self.margin(a, b)).estimate,
                                     "ci_low": e.ci_low, "ci_high": e.ci_high} for a, b in comps])
        folds = pd.DataFrame({k: v for k, v in self.fold_scores.items()}).rename_axis("fold").reset_index()
        preds = pd.DataFrame({"question_id": self.question_ids, "category": self.categories, "target": self.target,
                              **{f"pred_{k}": v for k, v in self.predictions.items()}})
        return {"table": summary, "comparisons": comparisons, "fold_r2": folds, "predictions": preds}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    @property
    def control(self) -> str:
        return ("category-only and text-only (TF-IDF ridge) baselines and random projections of the activations, "
                "on the same folds; permutation null through the same estimator")

    @property
    def uncertainty(self) -> str:
        return (f"Nadeau–Bengio corrected 95% CI over {len(self.fold_scores['activations'])} repeated-CV folds "
                f"(fold-paired for margins); SESOI {self.sesoi:g} R²")

    def plot(self, ax=None):
        fig, (a0, a1) = figure_for(ax, 2, 5.2, 3.8)
        names = ["activations", "category", "text", "random projections", "category+activations"]
        effects = [self.r2(k) for k in names]
        a0.bar(range(len(names)), [e.estimate for e in effects], color=["C0", "C1", "C2", "C7", "C4"],
               yerr=[[e.estimate - e.ci_low for e in effects], [e.ci_high - e.estimate for e in effects]], capsize=3)
        a0.set_xticks(range(len(names)), [n.replace(" ", "\n").replace("+", "+\n") for n in names], fontsize=7)
        a0.axhline(0, color="black", lw=0.6)
        a0.set(ylabel="cross-validated R² (NB 95% CI)", title="same folds for every predictor")
        cats = pd.Series(self.categories)
        for i, c in enumerate(sorted(cats.unique())):
            m = (cats == c).to_numpy()
            a1.scatter(self.predictions["activations"][m], self.target[m], s=8, color=f"C{i % 10}", label=c[:24])
        a1.set(xlabel="activations' out-of-fold prediction", ylabel=f"target ({self.meta.get('score')})",
               title="per question, by category")
        a1.legend(fontsize=5, markerscale=0.8)
        return fig
