"""``AblateResult``: per-question margins of the fine-tuned and the reference model, unedited (``kind="none"``),
with the direction ablated (``"direction"``) and with each control ablated (``"covariance"`` / ``"shuffled"``);
the difference-in-differences with its CI over questions, its excess over the controls and its rank among them,
decided under the one verdict rule (see :mod:`emprobe.analysis.ablate.compute`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.causal import PROVENANCE_CAVEATS as _CAVEATS, circular_reason
from emprobe.analysis.causal_effect import CausalEffect, t_effect
from emprobe.analysis.stats.verdict import Effect
from emprobe.result import Result, Verdict, figure_for


@dataclass(frozen=True)
class AblateResult(Result):
    """See the module docstring; ``in_domain`` holds the fine-tuned model's held-out in-domain margins (none /
    direction)."""

    table: pd.DataFrame  # kind, seed, model (tuned / reference), question_id, margin
    method: str
    min_fraction: float
    in_domain: pd.DataFrame = field(default_factory=pd.DataFrame)
    samples: pd.DataFrame = field(default_factory=pd.DataFrame)  # question_id, question, answer, ablated
    meta: dict = field(default_factory=dict)

    name: ClassVar[str] = "ablate"
    title: ClassVar[str] = "Ablating the direction: difference-in-differences"

    # ---- derived numbers ---------------------------------------------------------------------------
    def _gaps(self) -> pd.DataFrame:
        """``[variant, question]``: tuned − reference margin under each variant (kind, seed)."""
        t = self.table.pivot_table(index=["kind", "seed", "question_id"], columns="model", values="margin")
        return (t["tuned"] - t["reference"]).unstack("question_id")

    def _mean(self, kind: str, model: str, table: pd.DataFrame | None = None) -> float:
        t = self.table if table is None else table
        return float(t[(t.kind == kind) & (t.model == model)].margin.mean()) if len(t) else float("nan")

    @property
    def gap(self) -> Effect:
        """The fine-tune's per-question gap over the reference (both unablated), t-interval over questions."""
        return t_effect(self._gaps().loc[("none", 0)].to_numpy())

    @property
    def sesoi(self) -> float:
        g = self.gap.estimate
        return self.min_fraction * g if g > 0 else float("nan")

    def effect(self) -> CausalEffect:
        gaps = self._gaps()
        clean = gaps.loc[("none", 0)]
        did = clean - gaps.loc[("direction", 0)]
        keys = [k for k in gaps.index if k[0] not in ("none", "direction")]
        ctrl = np.stack([clean - gaps.loc[k] for k in keys]) if keys else np.zeros((0, len(did)))
        return CausalEffect.measure(did.to_numpy(), ctrl, self.sesoi, tuple(k for k, _ in keys))

    def _cannot_test(self, n: dict) -> str | None:
        if not n["gap_established"]:
            return (f"no fine-tune gap over the {self.meta.get('reference', 'reference')} model is established on these "
                    f"questions (gap {self.gap.text()})")
        return circular_reason(n["provenance"])

    def numbers(self) -> dict[str, Any]:
        e, g = self.effect(), self.gap
        ind = self.in_domain
        return {**e.numbers(), "gap": g.estimate, "gap_ci_low": g.ci_low, "gap_ci_high": g.ci_high,
                "gap_established": bool(g.ci_low > 0),
                "fraction_removed": e.effect.estimate / g.estimate if g.estimate > 0 else float("nan"),
                "margin_tuned": self._mean("none", "tuned"), "margin_tuned_ablated": self._mean("direction", "tuned"),
                "margin_reference": self._mean("none", "reference"),
                "margin_reference_ablated": self._mean("direction", "reference"),
                "in_domain_margin_tuned": self._mean("none", "tuned", ind),
                "in_domain_margin_ablated": self._mean("direction", "tuned", ind),
                "min_fraction": self.min_fraction, "provenance": self.meta.get("provenance", "unknown")}

    # ---- rendering ---------------------------------------------------------------------------------
    def _flags(self, n: dict, e: CausalEffect) -> list[str]:
        ref = self.meta.get("reference", "reference")
        flags = [_CAVEATS[n["provenance"]]] if n["provenance"] in _CAVEATS else []
        if not n["gap_established"]:
            flags.append(f"The fine-tune's gap over the {ref} model is not established on these {e.n_questions} "
                         f"questions ({self.gap.text()}), so there is nothing to remove.")
        elif e.effect.ci_high < 0:
            flags.append(f"The effect has the wrong sign: ablating the direction widens the gap (DiD "
                         f"{e.effect.text()}).")
        elif e.controls_match:
            flags.append(f"The controls match the effect: ablating the direction removes {e.effect.text()} of the gap; "
                         f"{e.controls_text()}.")
        return flags

    def findings(self) -> list[str]:
        n, e = self.numbers(), self.effect()
        ref = self.meta.get("reference", "reference")
        in_domain = (f"In-domain held-out margin of the fine-tuned model: {n['in_domain_margin_tuned']:+.3f} → "
                     f"{n['in_domain_margin_ablated']:+.3f} under the ablation."
                     if np.isfinite(n["in_domain_margin_tuned"]) else "No in-domain held-out set was scored.")
        return self._flags(n, e) + [
            f"The fine-tune's margin gap over the {ref} model on {e.n_questions} questions: {self.gap.text()} "
            f"nats/token (fine-tuned {n['margin_tuned']:+.3f}, {ref} {n['margin_reference']:+.3f}).",
            f"Ablating the {self.method} direction at every layer of the fine-tuned and the {ref} model gives "
            f"{n['margin_tuned_ablated']:+.3f} and {n['margin_reference_ablated']:+.3f}: the difference-in-differences "
            f"(gap removed) is "
            f"{e.effect.text()} nats/token, {n['fraction_removed']:.2f} of the gap (SESOI {self.min_fraction:.0%} of "
            f"the gap).",
            f"Variance-matched controls ablated the same way (covariance draws and shuffled-label mean differences "
            f"from the direction's activations): {e.controls_text()}.",
            in_domain,
        ]

    def verdict(self) -> Verdict:
        n, e = self.numbers(), self.effect()
        d = e.decision(cannot_test=self._cannot_test(n))
        return Verdict(f"ablating the {self.method} direction removes the fine-tune's margin gap over the "
                       f"{self.meta.get('reference', 'reference')} model beyond variance-matched directions", d.verdict,
                       f"difference-in-differences {e.effect.text()} ({n['fraction_removed']:.2f} of the gap "
                       f"{n['gap']:+.3f})",
                       f"{e.n_controls} variance-matched directions: mean {n['control_mean']:+.3f}, max "
                       f"{n['control_max']:+.3f}, rank p {n['rank_p']:.3f}",
                       f"95% t-interval over {e.n_questions} questions; excess over controls {e.excess.text()}",
                       d.reason)

    @property
    def control(self) -> str:
        n = self._gaps().index.to_frame(index=False)
        n = n[~n.kind.isin(["none", "direction"])].kind.value_counts()
        return (f"{' and '.join(f'{v} {k}' for k, v in n.items())} variance-matched directions ablated the same way "
                f"in both models; the {self.meta.get('reference', 'reference')} model ablated too "
                "(difference-in-differences)")

    @property
    def uncertainty(self) -> str:
        return "95% t-interval over questions; rank p-value among the controls"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, **({"in_domain": self.in_domain} if len(self.in_domain) else {}),
                **({"samples": self.samples} if len(self.samples) else {})}

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        gaps = self._gaps()
        did = (gaps.loc[("none", 0)] - gaps).mean(axis=1)
        ctrl = did.drop(index=[("none", 0), ("direction", 0)])
        for i, (kind, g) in enumerate(ctrl.groupby(level=0)):
            ax.scatter(np.full(len(g), 1 + i), g, s=12, color=f"C{i + 1}", alpha=0.6)
        e = self.effect().effect
        ax.errorbar([0], [e.estimate], yerr=[[e.estimate - e.ci_low], [e.ci_high - e.estimate]], fmt="o", capsize=4)
        ax.set_xticks(range(1 + ctrl.index.get_level_values(0).nunique()),
                      [self.method, *dict.fromkeys(ctrl.index.get_level_values(0))], fontsize=7)
        ax.axhline(self.gap.estimate, color="k", ls=":", label="the whole gap")
        ax.axhline(0, color="k", lw=0.8)
        ax.set(ylabel="gap removed (DiD, nats/token)", title="directional ablation vs controls")
        ax.legend(fontsize=7)
        return fig
