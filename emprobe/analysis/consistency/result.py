"""``ConsistencyResult``: per-question score agreement between runs, and how much of it is topic."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import Decision, Effect, decide
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = "Per-question scores agree across fine-tunes beyond topic"
ORDER = {"not supported": 0, "inconclusive": 1, "supported": 2}


@dataclass(frozen=True, eq=False)
class ConsistencyResult(Result):
    """One row per pair of runs: Spearman / Pearson with bootstrap CIs, within-category correlation, category share."""

    pairs: pd.DataFrame
    scores: pd.DataFrame  # question_id, one column per run, category
    score: str
    sesoi: float
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "consistency"
    title: ClassVar[str] = "Per-question scores across runs: agreement and its topic share"

    def effect(self, row: pd.Series, stat: str = "within_pearson") -> Effect:
        return Effect(float(row[stat]), float(row[f"{stat}_ci_low"]), float(row[f"{stat}_ci_high"]))

    def decisions(self) -> list[Decision]:
        return [decide(self.effect(r), self.sesoi, units="r", fmt="+.2f") for _, r in self.pairs.iterrows()]

    def decisive(self) -> tuple[pd.Series, Decision]:
        """The weakest pair (not supported < inconclusive < supported; ties: the lower within-category r)."""
        d = self.decisions()
        i = min(range(len(d)), key=lambda k: (ORDER[d[k].verdict], self.pairs.within_pearson.iloc[k]))
        return self.pairs.iloc[i], d[i]

    def verdict(self) -> Verdict:
        row, d = self.decisive()
        share = self._pct(row.category_share) if row.pearson_ci_low > 0 else "n/a"
        number = (f"{self._pair(row)}: within-category r {row.within_pearson:+.2f} (total Spearman "
                  f"{row.spearman:+.2f}, category share {share})")
        return Verdict(CLAIM, d.verdict, number, self.control, self.uncertainty, d.reason)

    @staticmethod
    def _pct(x: float) -> str:
        return "n/a" if not np.isfinite(x) else f"{100 * x:.0f}%"

    def _pair(self, row: pd.Series) -> str:
        ds = self.meta.get("datasets") or {}
        a, b = ds.get(row.run_a) or row.run_a, ds.get(row.run_b) or row.run_b
        return f"{a} vs {b}"

    def findings(self) -> list[str]:
        v = self.verdict()
        r0 = self.pairs.iloc[0]
        out = [f"Agreement beyond topic is {v.verdict}: {v.number}; {v.reason}.",
               f"{len(self.pairs)} pair(s) of runs on {int(r0.n_questions)} shared questions in "
               f"{int(r0.n_categories)} categories ({self.score}; 95% bootstrap CIs over questions):"]
        for (_, r), d in zip(self.pairs.iterrows(), self.decisions()):
            out.append(f"{self._pair(r)}: Spearman {self.effect(r, 'spearman').text('+.2f')}, Pearson "
                       f"{self.effect(r, 'pearson').text('+.2f')}; {self._share(r)}; within-category r "
                       f"{self.effect(r).text('+.2f')} (Spearman {r.within_spearman:+.2f}): beyond topic "
                       f"{d.verdict}.")
        if self.meta.get("n_missing_or_null"):
            out.append(f"{self.meta['n_missing_or_null']} question(s) missing or null in some run were left out.")
        agree = self.pairs[self.pairs.pearson_ci_low > 0]
        topic = len(agree) > 0 and bool((agree.category_share > 0.5).all())
        return control_first(out, topic, "Most of the agreement between runs is topic: where the runs agree, the "
                                         f"category means carry {self._pct(agree.category_share.min())}-"
                                         f"{self._pct(agree.category_share.max())} of the covariance.")

    def _share(self, r: pd.Series) -> str:
        if not r.pearson_ci_low > 0:
            return "category share n/a (no agreement shown to split)"
        return (f"category share of the covariance {self._pct(r.category_share)} "
                f"[{self._pct(r.category_share_ci_low)}, {self._pct(r.category_share_ci_high)}]")

    def numbers(self) -> dict[str, Any]:
        row, _ = self.decisive()
        return {"n_pairs": len(self.pairs), "n_questions": int(row.n_questions), "sesoi": self.sesoi,
                "within_pearson": float(row.within_pearson), "within_pearson_ci_low": float(row.within_pearson_ci_low),
                "within_pearson_ci_high": float(row.within_pearson_ci_high), "spearman": float(row.spearman),
                "category_share": float(row.category_share), "mean_spearman": float(self.pairs.spearman.mean()),
                "mean_category_share": float(self.pairs.category_share.mean())}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.pairs, "scores": self.scores}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    @property
    def control(self) -> str:
        return "category means (topic): the between-category share of the covariance, and the within-category r"

    @property
    def uncertainty(self) -> str:
        return f"percentile bootstrap over questions ({self.meta.get('n_boot')} draws); SESOI r {self.sesoi:g}"

    def plot(self, ax=None):
        fig, (a0, a1) = figure_for(ax, 2, 5.0, 3.8)
        labels = [self._pair(r).replace(" vs ", "\nvs ") for _, r in self.pairs.iterrows()]
        x = np.arange(len(self.pairs))
        for k, (stat, c) in enumerate((("spearman", "C0"), ("pearson", "C1"), ("within_pearson", "C3"))):
            p = self.pairs
            err = [p[stat] - p[f"{stat}_ci_low"], p[f"{stat}_ci_high"] - p[stat]]
            a0.errorbar(x + 0.15 * (k - 1), p[stat], yerr=err, fmt="o", ms=4, capsize=3, color=c,
                        label=stat.replace("_", " "))
        a0.axhline(0, color="black", lw=0.6)
        a0.axhspan(-self.sesoi, self.sesoi, color="grey", alpha=0.12, lw=0)
        a0.set_xticks(x, labels, fontsize=6)
        a0.set(ylabel=f"correlation of per-question {self.score}", title="agreement (95% CI)")
        a0.legend(fontsize=6)
        r = self.pairs.iloc[0]
        cats = self.scores.category
        for i, c in enumerate(sorted(cats.unique())):
            m = cats == c
            a1.scatter(self.scores.loc[m, r.run_a], self.scores.loc[m, r.run_b], s=8, color=f"C{i % 10}")
        a1.set(xlabel=str((self.meta.get("datasets") or {}).get(r.run_a) or r.run_a),
               ylabel=str((self.meta.get("datasets") or {}).get(r.run_b) or r.run_b),
               title=f"{self.score} per question (colour: category)")
        return fig
