"""``ScreenResult``: per-example projection differences and ranks, and the retrain test when it ran.

The control of the retrain test is removing K *random* examples (≥ 3 draws): any removal changes which examples
a short fine-tune sees. When the random removals take away at least as much of the EM-specific rise as the top-K
removal, the first finding says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import Effect, decide
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = ("removing the training examples ranked highest by projection difference removes more of the EM-specific "
         "rise than removing as many random examples")


@dataclass(frozen=True, eq=False)
class ScreenResult(Result):
    """Scores (one row per training example) and, with a retrain test, per-arm margins and fraction statistics."""

    scores: pd.DataFrame   # index, projection_diff, proj_response, proj_baseline, rank, n_response_tokens, prompt, ...
    layer: int
    sesoi: float
    baseline: str
    k: int | None = None
    removed: dict[str, list[int]] = field(default_factory=dict)
    margins: pd.DataFrame | None = None  # arm, question_id, margin
    stats: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "screen"
    title: ClassVar[str] = "Training-data screening by projection difference, with a retrain test"

    @property
    def retrained(self) -> bool:
        return self.margins is not None

    def effect(self) -> Effect:
        s = self.stats
        return Effect(s["frac_difference"], s["frac_difference_low"], s["frac_difference_high"])

    def decision(self):
        s = self.stats
        why = None
        if not s["rise_full_low"] > 0:
            why = (f"no EM-specific rise to remove: the full-data run's rise {s['rise_full']:+.3f} has a 95% CI "
                   f"[{s['rise_full_low']:+.3f}, {s['rise_full_high']:+.3f}] that is not above 0")
        return decide(self.effect(), self.sesoi, cannot_test=why, units="of the rise", fmt="+.2f")

    # ---- Result ------------------------------------------------------------------------------
    def findings(self) -> list[str]:
        out = [self._score_finding()]
        if not self.retrained:
            return out + ["No retrain test ran (retrain=K with run= and control=): the ranking is not tested causally."]
        s, d = self.stats, self.decision()
        n = len(self.scores)
        draws = ", ".join(f"{s['frac_random_' + str(i)]:+.0%}" for i in range(s["n_draws"]))
        out.append(f"Retraining without the top {self.k} of {n} examples ({self.k / n:.0%}) removes "
                   f"{s['frac_top']:+.0%} (95% CI [{s['frac_top_low']:+.0%}, {s['frac_top_high']:+.0%}]) of the full "
                   "run's EM-specific rise "
                   f"({s['rise_full']:+.3f} nats/token over {s['n_questions']} questions); without {self.k} random "
                   f"examples ({s['n_draws']} draws: {draws}) "
                   f"{s['frac_random']:+.0%} ([{s['frac_random_low']:+.0%}, {s['frac_random_high']:+.0%}]).")
        out.append(f"Top − random: {self.effect().text('+.2f')} — {d.verdict}: {d.reason}.")
        if not s["rise_full_low"] > 0:
            return [f"There is no EM to remove: the full-data run's EM-specific rise is {s['rise_full']:+.3f} "
                    f"(95% CI [{s['rise_full_low']:+.3f}, {s['rise_full_high']:+.3f}]), so the retrain test cannot "
                    "decide anything.", *out]
        beaten = s["frac_random"] >= s["frac_top"]
        return control_first(out, beaten, f"Removing random examples takes away as much of the EM-specific rise as "
                                          f"removing the top-ranked ones ({s['frac_random']:+.0%} vs "
                                          f"{s['frac_top']:+.0%}): the ranking adds nothing causal here.")

    def _score_finding(self) -> str:
        df = self.scores.sort_values("rank")
        k = self.k or max(1, round(0.1 * len(df)))
        top, rest = df.projection_diff.iloc[:k], df.projection_diff.iloc[k:]
        first = df.iloc[0]
        own = "the base model's own answer"
        return (f"Projection difference ΔP on the misalignment direction at layer {self.layer} (training response vs "
                f"{own if self.baseline == 'generate' else self.baseline}) over "
                f"{len(df)} examples: mean {df.projection_diff.mean():+.3f} (sd {df.projection_diff.std(ddof=1):.3f}); "
                f"top {k}: mean {top.mean():+.3f}, the rest {rest.mean():+.3f}. Highest: #{int(first['index'])} "
                f"(ΔP {first.projection_diff:+.3f}) {first.prompt[:80]!r}.")

    def verdict(self) -> Verdict:
        if not self.retrained:
            return Verdict(CLAIM, "inconclusive", "not measured", self.control, self.uncertainty,
                           "no retrain test ran (pass retrain=K with the full-data run and its control)")
        d = self.decision()
        return Verdict(CLAIM, d.verdict, f"fraction removed, top − random = {self.effect().text('+.2f')}",
                       self.control, self.uncertainty, d.reason)

    def numbers(self) -> dict[str, Any]:
        df = self.scores
        return {"n_examples": len(df), "layer": self.layer, "k": self.k, "sesoi": self.sesoi,
                "projection_diff_mean": float(df.projection_diff.mean()),
                "projection_diff_sd": float(df.projection_diff.std(ddof=1)), **self.stats}

    def tables(self) -> dict[str, pd.DataFrame]:
        out = {"table": self.scores.sort_values("rank").reset_index(drop=True)}
        if self.retrained:
            out["margins"] = self.margins
        return out

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta), "removed": self.removed}

    @property
    def control(self) -> str:
        return (f"retraining without K random examples ({self.stats.get('n_draws', 0)} draws), EM-specific rise "
                "relative to the aligned-data control run" if self.retrained else "none (no retrain test)")

    @property
    def uncertainty(self) -> str:
        return ("95% percentile bootstrap CI over questions and random draws" if self.retrained
                else "none (screening only)")

    def plot(self, ax=None):
        fig, (a, b) = figure_for(ax, 2, width=5.5)
        v = np.sort(self.scores.projection_diff.to_numpy())[::-1]
        a.plot(np.arange(1, len(v) + 1), v, color="C0")
        if self.k:
            a.axvline(self.k + 0.5, color="C3", ls="--", label=f"top {self.k} removed")
            a.legend(fontsize=7)
        a.axhline(0, color="k", lw=0.8)
        a.set(xlabel="rank", ylabel="projection difference ΔP", title=f"screening (layer {self.layer})")
        if self.retrained:
            s = self.stats
            names = ["top", *[f"random {i}" for i in range(s["n_draws"])], "random (all)"]
            vals = [s["frac_top"], *[s[f"frac_random_{i}"] for i in range(s["n_draws"])], s["frac_random"]]
            b.bar(range(len(vals)), vals, color=["C3", *["C7"] * s["n_draws"], "C0"])
            for i, key in ((0, "frac_top"), (len(vals) - 1, "frac_random")):
                b.errorbar(i, s[key], yerr=[[s[key] - s[f"{key}_low"]], [s[f"{key}_high"] - s[key]]], color="k",
                           capsize=4)
            b.set_xticks(range(len(vals)), names, fontsize=7, rotation=30)
            b.axhline(0, color="k", lw=0.8)
            b.set(ylabel="fraction of EM rise removed", title=f"retrain without {self.k} examples")
        else:
            b.text(0.5, 0.5, "no retrain test", ha="center", va="center", transform=b.transAxes)
            b.set_axis_off()
        if ax is None:
            fig.tight_layout()
        return fig
