"""``SteerResult``: per-question margins along the direction for every α, and for the variance-matched controls at
the largest α; the effect (margin shift at the largest α) with its CI over questions, its excess over the controls
and its rank among them, decided under the one verdict rule (see :mod:`emprobe.analysis.steer.compute`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.causal import PROVENANCE_CAVEATS as _CAVEATS, circular_reason
from emprobe.analysis.causal_effect import CausalEffect
from emprobe.analysis.stats import spearman
from emprobe.result import Result, Verdict, figure_for


@dataclass(frozen=True)
class SteerResult(Result):
    """Margins per (kind, seed, α, question): ``kind`` = ``direction`` (every α) or a control kind
    (``covariance`` / ``shuffled``, the largest α only). Optional ``meta`` keys: ``sesoi_basis`` (what the SESOI
    was declared as, shown beside it) and ``cannot_test`` (a failed precondition, e.g. no rise to take a share of:
    the verdict is then inconclusive, saying why)."""

    table: pd.DataFrame  # kind, seed, alpha, layer, question_id, margin, vector_norm
    layer: int
    unit: bool
    method: str
    sesoi: float
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # question_id, question, answer, alpha
    meta: dict = field(default_factory=dict)

    name: ClassVar[str] = "steer"
    title: ClassVar[str] = "Steering along the direction"

    # ---- derived numbers ---------------------------------------------------------------------------
    def _real(self) -> pd.DataFrame:
        return self.table[self.table.kind == "direction"]

    @property
    def top_alpha(self) -> float:
        return float(self._real().alpha.max())

    def effect(self) -> CausalEffect:
        """Per-question margin shift at the largest α against each control's, on the same questions."""
        real = self._real()
        clean = real[real.alpha == 0].set_index("question_id").margin
        shift = real[np.isclose(real.alpha, self.top_alpha)].set_index("question_id").margin - clean
        ctrl = self.table[self.table.kind != "direction"]
        keys = list(dict.fromkeys(zip(ctrl.kind, ctrl.seed)))
        rows = [ctrl[(ctrl.kind == k) & (ctrl.seed == s)].set_index("question_id").margin.reindex(shift.index) - clean
                for k, s in keys]
        return CausalEffect.measure(shift.to_numpy(), np.stack(rows) if rows else np.zeros((0, len(shift))),
                                    self.sesoi, tuple(k for k, _ in keys))

    def numbers(self) -> dict[str, Any]:
        means = self._real().groupby("alpha").margin.mean()
        e = self.effect()
        return {**e.numbers(), "spearman_alpha_margin": spearman(means.index, means.to_numpy()),
                "monotonic": bool(np.all(np.diff(means.to_numpy()) > 0)), "layer": self.layer, "unit": self.unit,
                "alpha_low": float(means.index[0]), "alpha_high": float(means.index[-1]),
                "margin_low_alpha": float(means.iloc[0]), "margin_clean": float(means.loc[0.0]),
                "margin_high_alpha": float(means.iloc[-1]),
                "vector_norm": float(self._real().vector_norm.iloc[-1]), "wrong_sign": bool(e.effect.ci_high < 0),
                "provenance": self.meta.get("provenance", "unknown")}

    # ---- rendering ---------------------------------------------------------------------------------
    def _flags(self, n: dict, e: CausalEffect) -> list[str]:
        """The caveats and failed controls, stated plainly (they come first)."""
        flags = [_CAVEATS[n["provenance"]]] if n["provenance"] in _CAVEATS else []
        if self.meta.get("cannot_test"):
            flags.append(f"The verdict is inconclusive: {self.meta['cannot_test']}.")
        if n["wrong_sign"]:
            flags.append(f"The effect has the wrong sign: steering along the direction at α={n['alpha_high']:g} moves "
                         f"the margin by {e.effect.text()}, down, not up.")
        elif e.controls_match:
            flags.append(f"The controls match the effect: at α={n['alpha_high']:g} the direction shifts the margin by "
                         f"{e.effect.text()}; {e.controls_text()}.")
        return flags

    @property
    def _basis(self) -> str:
        """What the SESOI was declared as (``meta["sesoi_basis"]``, e.g. a share of the fine-tune's rise)."""
        return f" = {self.meta['sesoi_basis']}" if self.meta.get("sesoi_basis") else ""

    def findings(self) -> list[str]:
        n, e = self.numbers(), self.effect()
        body = [
            f"Steering along the {self.method} direction at layer {self.layer} ({'unit' if self.unit else 'raw'} vector, "
            f"norm {n['vector_norm']:.3g}) moves the mean margin from {n['margin_low_alpha']:+.3f} (α={n['alpha_low']:g})"
            f" through {n['margin_clean']:+.3f} (α=0) to {n['margin_high_alpha']:+.3f} (α={n['alpha_high']:g}) over "
            f"{e.n_questions} questions; Spearman ρ(α, margin) = {n['spearman_alpha_margin']:.2f}, "
            f"{'monotonic' if n['monotonic'] else 'not monotonic'} in α.",
            f"Shift at α={n['alpha_high']:g}: {e.effect.text()} nats/token (t-interval over questions; SESOI "
            f"{self.sesoi:.3g}{self._basis}). Variance-matched controls of the same norm (covariance draws and "
            f"shuffled-label mean differences from the direction's activations): {e.controls_text()}.",
        ]
        return self._flags(n, e) + body

    def verdict(self) -> Verdict:
        n, e = self.numbers(), self.effect()
        d = e.decision(cannot_test=circular_reason(n["provenance"]) or self.meta.get("cannot_test"))
        return Verdict(f"adding the {self.method} direction at layer {self.layer} raises the misalignment margin "
                       "beyond variance-matched directions", d.verdict,
                       f"margin shift {e.effect.text()} at α={n['alpha_high']:g}",
                       f"{e.n_controls} variance-matched directions: mean {n['control_mean']:+.3f}, max "
                       f"{n['control_max']:+.3f}, rank p {n['rank_p']:.3f}",
                       f"95% t-interval over {e.n_questions} questions; excess over controls {e.excess.text()}",
                       d.reason)

    @property
    def control(self) -> str:
        n = self.table[self.table.kind != "direction"][["kind", "seed"]].drop_duplicates().kind.value_counts()
        return (f"{' and '.join(f'{v} {k}' for k, v in n.items())} variance-matched directions of the same norm "
                "(covariance draws / shuffled-label mean differences from the direction's activations)")

    @property
    def uncertainty(self) -> str:
        return "95% t-interval over questions; rank p-value among the controls"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, **({"samples": self.samples} if len(self.samples) else {})}

    def inputs(self) -> dict[str, Any]:
        return {**self.meta, "alphas": sorted(float(a) for a in set(self._real().alpha))}

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        real = self._real().groupby("alpha").margin
        m, sd, k = real.mean(), real.std(ddof=1), real.count()
        ax.errorbar(m.index, m, yerr=1.96 * sd / np.sqrt(k), marker="o", capsize=3, label=f"{self.method} L{self.layer}")
        ctrl = self.table[self.table.kind != "direction"].groupby(["kind", "seed"]).margin.mean()
        for i, (kind, g) in enumerate(ctrl.groupby(level=0)):
            ax.scatter(np.full(len(g), self.top_alpha) + 0.02 * (i + 1) * (m.index[-1] - m.index[0]), g, s=10,
                       color=f"C{i + 1}", alpha=0.6, label=f"{kind} controls")
        ax.set(xlabel="α", ylabel="mean margin (misaligned − aligned)", title="steering vs variance-matched controls")
        ax.legend(fontsize=7)
        return fig
