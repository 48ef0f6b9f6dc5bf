"""Steering: add ``α · direction`` to the residual stream at one layer (every position), sweep α, and compare
with random directions of the same norm (≥ 5, the control).

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``). Metric: the mean
judge-free margin (misaligned minus aligned reference log-prob; see :mod:`emprobe.analysis.causal`).
Samples (temperature 0.7, top-p 0.9) at α = 0 and the largest α are kept beside the scores.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats import spearman
from emprobe.result import Result, Verdict, figure_for


@dataclass(frozen=True)
class SteerResult(Result):
    """Mean margin per α for the direction (``kind="direction"``) and ``n_random`` random directions."""

    table: pd.DataFrame  # kind, seed, alpha, layer, margin, vector_norm
    layer: int
    unit: bool
    method: str
    n_random: int
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # question_id, question, answer, alpha
    meta: dict = field(default_factory=dict)

    name: ClassVar[str] = "steer"
    title: ClassVar[str] = "Steering along the direction"

    # ---- derived numbers ---------------------------------------------------------------------------
    def _real(self) -> pd.DataFrame:
        return self.table[self.table.kind == "direction"].sort_values("alpha")

    def _band(self) -> pd.Series:
        """min / max / mean / std of the random directions' margin at the largest α."""
        top = float(self._real().alpha.iloc[-1])
        rand = self.table[(self.table.kind == "random") & np.isclose(self.table.alpha, top)]
        return rand.margin.agg(["min", "max", "mean", "std"])

    def numbers(self) -> dict[str, Any]:
        real, band = self._real(), self._band()
        low, high = float(real.margin.iloc[0]), float(real.margin.iloc[-1])
        return {"spearman_alpha_margin": spearman(real.alpha, real.margin),
                "monotonic": bool(np.all(np.diff(real.margin.to_numpy()) > 0)),
                "beyond_random_band": bool(high > band["max"]), "wrong_sign": bool(high <= low),
                "layer": self.layer, "unit": self.unit, "alpha_low": float(real.alpha.iloc[0]),
                "alpha_high": float(real.alpha.iloc[-1]), "margin_low_alpha": low, "margin_high_alpha": high,
                "random_mean_high_alpha": float(band["mean"]), "random_min_high_alpha": float(band["min"]),
                "random_max_high_alpha": float(band["max"]), "vector_norm": float(real.vector_norm.iloc[-1]),
                "n_random": self.n_random}

    # ---- rendering ---------------------------------------------------------------------------------
    def _flags(self, n: dict) -> list[str]:
        """The failed controls, stated plainly (they come first)."""
        a, flags = n["alpha_high"], []
        if n["wrong_sign"]:
            flags.append(f"The effect has the wrong sign: steering along the direction moves the margin from "
                         f"{n['margin_low_alpha']:+.3f} (α={n['alpha_low']:g}) to {n['margin_high_alpha']:+.3f} "
                         f"(α={a:g}), not up.")
        if not n["beyond_random_band"]:
            flags.append(f"The control beats the effect: at α={a:g} the direction gives {n['margin_high_alpha']:+.3f}, "
                         f"within the range of {n['n_random']} random directions of the same norm "
                         f"[{n['random_min_high_alpha']:+.3f}, {n['random_max_high_alpha']:+.3f}].")
        if not n["monotonic"] and not n["wrong_sign"]:
            flags.append(f"The effect is not monotonic in α (Spearman ρ(α, margin) = {n['spearman_alpha_margin']:.2f}).")
        return flags

    def findings(self) -> list[str]:
        n = self.numbers()
        body = [
            f"Steering along the {self.method} direction at layer {self.layer} ({'unit' if self.unit else 'raw'} "
            f"vector, norm {n['vector_norm']:.3g}) moves the mean margin from {n['margin_low_alpha']:+.3f} "
            f"(α={n['alpha_low']:g}) to {n['margin_high_alpha']:+.3f} (α={n['alpha_high']:g}); Spearman ρ(α, margin) = "
            f"{n['spearman_alpha_margin']:.2f}, {'monotonic' if n['monotonic'] else 'not monotonic'} in α.",
            f"At α={n['alpha_high']:g}, {self.n_random} random directions of the same norm give "
            f"{n['random_mean_high_alpha']:+.3f} (range [{n['random_min_high_alpha']:+.3f}, "
            f"{n['random_max_high_alpha']:+.3f}]): the direction's effect is "
            f"{'beyond' if n['beyond_random_band'] else 'within'} the random band.",
        ]
        return self._flags(n) + body

    def verdict(self) -> Verdict:
        n = self.numbers()
        if n["wrong_sign"] or not n["beyond_random_band"]:
            v, why = "not supported", ("wrong sign" if n["wrong_sign"] else "within the random-direction band")
        elif not n["monotonic"]:
            v, why = "inconclusive", "beyond the random band at the largest α but not monotonic in α"
        else:
            v, why = "supported", "monotonic in α and beyond every random direction at the largest α"
        return Verdict(f"adding the {self.method} direction at layer {self.layer} raises the misalignment margin",
                       v, f"margin {n['margin_low_alpha']:+.3f} → {n['margin_high_alpha']:+.3f} "
                          f"(α {n['alpha_low']:g} → {n['alpha_high']:g})",
                       f"random directions at α={n['alpha_high']:g}: {n['random_mean_high_alpha']:+.3f}",
                       f"random range [{n['random_min_high_alpha']:+.3f}, {n['random_max_high_alpha']:+.3f}]", why)

    @property
    def control(self) -> str:
        return f"{self.n_random} random directions of the same norm"

    @property
    def uncertainty(self) -> str:
        return "random-direction band (min-max) at each α"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, **({"samples": self.samples} if len(self.samples) else {})}

    def inputs(self) -> dict[str, Any]:
        return {**self.meta, "alphas": sorted(float(a) for a in self._real().alpha)}

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        real = self._real()
        band = self.table[self.table.kind == "random"].groupby("alpha").margin.agg(["min", "max", "mean"])
        ax.fill_between(band.index, band["min"], band["max"], color="grey", alpha=0.3, label="random directions")
        ax.errorbar(band.index, band["mean"], yerr=[band["mean"] - band["min"], band["max"] - band["mean"]],
                    fmt="none", color="grey")
        ax.plot(real.alpha, real.margin, marker="o", label=f"{self.method} L{self.layer}")
        ax.set(xlabel="α", ylabel="mean margin (misaligned − aligned)", title="steering")
        ax.legend(fontsize=7)
        return fig
