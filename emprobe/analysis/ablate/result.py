"""Directional ablation: project the direction out of the fine-tuned model's residual stream at every layer
(``h ← h − (h·r̂) r̂``) and measure how much of the fine-tune's off-domain margin rise it removes, what it
costs in-domain, and how much random directions (≥ 5, the control) remove ablated the same way.

Layer ``l`` = residual stream after decoder block ``l``. Metric: the mean judge-free margin (see
:mod:`emprobe.analysis.causal`). Samples (temperature 0.7, top-p 0.9) with and without the ablation are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.result import Result, Verdict, figure_for


@dataclass(frozen=True)
class AblateResult(Result):
    """Off- and in-domain margins of the fine-tuned model: unedited (``kind="none"``), with the direction
    ablated (``"direction"``) and with each random direction ablated (``"random"``)."""

    table: pd.DataFrame  # kind, seed, off_domain_margin, in_domain_margin, fraction_removed
    margin_base: float  # the base model's off-domain mean margin
    method: str
    n_random: int
    random_in_domain: bool = True
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # question_id, question, answer, ablated
    meta: dict = field(default_factory=dict)

    name: ClassVar[str] = "ablate"
    title: ClassVar[str] = "Ablating the direction in the fine-tuned model"

    @staticmethod
    def build(rows: pd.DataFrame, margin_base: float, method: str, n_random: int, **kw: Any) -> "AblateResult":
        """The result from the per-variant margins (adds ``fraction_removed`` = share of the rise removed)."""
        tuned = float(rows[rows.kind == "none"].off_domain_margin.iloc[0])
        rise = tuned - margin_base
        frac = (tuned - rows.off_domain_margin) / rise if abs(rise) > 1e-12 else np.nan
        return AblateResult(rows.assign(fraction_removed=frac), float(margin_base), method, n_random, **kw)

    def _row(self, kind: str) -> pd.Series:
        return self.table[self.table.kind == kind].iloc[0]

    def numbers(self) -> dict[str, Any]:
        clean, real = self._row("none"), self._row("direction")
        rand = self.table[self.table.kind == "random"]
        rf = rand.fraction_removed.to_numpy(float)
        removed = float(real.fraction_removed)
        rise = float(clean.off_domain_margin) - self.margin_base
        return {"margin_base": self.margin_base, "margin_tuned": float(clean.off_domain_margin),
                "margin_ablated": float(real.off_domain_margin), "rise": rise, "fraction_removed": removed,
                "random_fraction_mean": float(np.mean(rf)), "random_fraction_sd": float(np.std(rf, ddof=1)),
                "random_fraction_max": float(np.max(rf)), "random_margin_mean": float(rand.off_domain_margin.mean()),
                "random_margin_sd": float(rand.off_domain_margin.std(ddof=1)),
                "in_domain_margin_tuned": float(clean.in_domain_margin),
                "in_domain_margin_ablated": float(real.in_domain_margin),
                "in_domain_margin_random": float(rand.in_domain_margin.mean()) if self.random_in_domain else np.nan,
                "rise_positive": bool(rise > 0), "wrong_sign": bool(removed < 0),
                "control_beats_effect": bool(np.max(rf) >= removed), "n_random": self.n_random}

    def summary(self) -> dict[str, Any]:  # + the per-random-direction fractions (a list, so not in numbers())
        rf = self.table[self.table.kind == "random"].fraction_removed
        return {**super().summary(), "random_fraction_removed": [float(x) for x in rf]}

    def _flags(self, n: dict) -> list[str]:
        flags = []
        if not n["rise_positive"]:
            flags.append(f"The fine-tune did not raise the off-domain margin on these questions ({n['rise']:+.3f}), so "
                         "'fraction removed' is not meaningful here; compare the margins.")
        elif n["wrong_sign"]:
            flags.append(f"The effect has the wrong sign: ablating the direction raises the off-domain margin "
                         f"({n['margin_tuned']:+.3f} → {n['margin_ablated']:+.3f}, {n['fraction_removed']:.2f} of the "
                         f"rise 'removed'; random directions {n['random_fraction_mean']:.2f}).")
        if n["rise_positive"] and n["control_beats_effect"]:
            flags.append(f"The control beats the effect: a random direction removes {n['random_fraction_max']:.2f} of "
                         f"the rise (mean {n['random_fraction_mean']:.2f} over {self.n_random}), the direction "
                         f"{n['fraction_removed']:.2f}.")
        return flags

    def findings(self) -> list[str]:
        n = self.numbers()
        rand_in = (f"(random: {n['in_domain_margin_random']:+.3f})." if self.random_in_domain
                   else "(random directions not scored in-domain).")
        in_domain = (f"In-domain held-out margin: {n['in_domain_margin_tuned']:+.3f} → "
                     f"{n['in_domain_margin_ablated']:+.3f} under ablation {rand_in}"
                     if np.isfinite(n["in_domain_margin_tuned"]) else "No in-domain held-out set was scored.")
        return self._flags(n) + [
            f"The fine-tune moves the off-domain mean margin by {n['rise']:+.3f} ({n['margin_base']:+.3f} → "
            f"{n['margin_tuned']:+.3f}).",
            f"Ablating the {self.method} direction at every layer moves it to {n['margin_ablated']:+.3f} "
            f"({n['fraction_removed']:.2f} of the rise removed) vs {n['random_margin_mean']:+.3f} ± "
            f"{n['random_margin_sd']:.3f} ({n['random_fraction_mean']:.2f} of the rise) for {self.n_random} random "
            "directions.",
            in_domain,
        ]

    def verdict(self) -> Verdict:
        n = self.numbers()
        if not n["rise_positive"]:
            v, why = "inconclusive", "the fine-tune did not raise the off-domain margin"
        elif n["wrong_sign"]:
            v, why = "not supported", "ablation raises the off-domain margin (wrong sign)"
        elif n["control_beats_effect"]:
            v, why = "not supported", "a random direction removes as much of the rise"
        else:
            v, why = "supported", "removes more of the rise than every random direction"
        return Verdict(f"ablating the {self.method} direction removes the fine-tune's off-domain margin rise", v,
                       f"{n['fraction_removed']:.2f} of the rise removed ({n['margin_tuned']:+.3f} → "
                       f"{n['margin_ablated']:+.3f})",
                       f"{self.n_random} random directions: {n['random_fraction_mean']:.2f} (max {n['random_fraction_max']:.2f})",
                       f"random-direction spread: sd {n['random_fraction_sd']:.2f}", why)

    @property
    def control(self) -> str:
        return f"{self.n_random} random directions ablated the same way"

    @property
    def uncertainty(self) -> str:
        return "spread over random directions"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, **({"samples": self.samples} if len(self.samples) else {})}

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        n, rand = self.numbers(), self.table[self.table.kind == "random"].off_domain_margin
        ax.bar(["fine-tuned", f"ablate {self.method}"], [n["margin_tuned"], n["margin_ablated"]])
        ax.errorbar([1], [rand.mean()], yerr=[[rand.mean() - rand.min()], [rand.max() - rand.mean()]], fmt="o",
                    color="grey", label="ablate random")
        ax.axhline(self.margin_base, color="k", ls=":", label="base model")
        ax.set(ylabel="off-domain mean margin", title="directional ablation")
        ax.legend(fontsize=7)
        return fig
