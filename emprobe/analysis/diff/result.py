"""``DiffResult``: per-token KL(base ‖ tuned), the activation-difference lens, and per-question KL vs EM.

The control is the aligned-data fine-tune: its KL per question is correlated with the same EM-specific rise. When
its ρ is at least the misaligned run's, the first finding says so (any fine-tune's KL tracks the rise as well).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.diff.lens import layer_norms, top_tokens
from emprobe.analysis.stats.verdict import Effect, decide
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = ("per question, the misaligned fine-tune's KL(base ‖ tuned) on off-domain answers tracks the EM-specific "
         "rise more than the aligned control's KL does")


@dataclass(frozen=True, eq=False)
class DiffResult(Result):
    """KL per token / question / position, the lens table, and the KL-vs-rise correlations."""

    kl: pd.DataFrame            # variant, source (responses | text), item, position, kl
    per_question: pd.DataFrame  # question_id, kl_tuned[, kl_control], base, misaligned_change[, control_change,
    #                             em_rise]
    lens: pd.DataFrame          # variant, layer, side, rank, token_id, token, logit, delta_norm, base_norm
    answers: pd.DataFrame       # question_id, answer (the base model's greedy answer)
    stats: dict[str, float]
    sesoi: float
    lens_tokens: int
    n_layers: int
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "diff"
    title: ClassVar[str] = "Model diff: what the fine-tune changed (KL, activation-difference lens)"

    # ---- derived -----------------------------------------------------------------------------
    @property
    def has_control(self) -> bool:
        return "rho_control" in self.stats

    def mean_kl(self, variant: str, source: str) -> float:
        g = self.kl[(self.kl.variant == variant) & (self.kl.source == source)]
        return float(g.kl.mean()) if len(g) else float("nan")

    @property
    def lens_layers(self) -> tuple[int, int]:
        """(the middle layer among those lensed, the layer where ‖δ‖ is largest relative to the activations)."""
        norms = layer_norms(self.lens)
        t = norms[norms.variant == "tuned"]
        layers = sorted(t.layer)
        return layers[len(layers) // 2], int(t.loc[t.relative.idxmax()].layer)

    def effect(self) -> Effect:
        s = self.stats
        if self.has_control:
            return Effect(s["rho_difference"], s["rho_difference_low"], s["rho_difference_high"])
        return Effect(s.get("rho_tuned", float("nan")), s.get("rho_tuned_low", float("nan")),
                      s.get("rho_tuned_high", float("nan")))

    def decision(self):
        n = int(self.stats["n_questions"])
        why = None
        if not self.has_control:
            why = "no aligned-control run: any fine-tune's KL could track the rise as well"
        elif n < 5:
            why = f"only {n} questions"
        return decide(self.effect(), self.sesoi, cannot_test=why, units="in ρ", fmt="+.2f")

    # ---- Result ------------------------------------------------------------------------------
    def findings(self) -> list[str]:
        s = self.stats
        out = [self._kl_finding(), *self._lens_findings()]
        if "rho_tuned" not in s:
            return out + [f"Too few questions ({int(s['n_questions'])}) to correlate KL with the rise."]
        target = "EM-specific rise" if s["target_em_specific"] else "margin rise (no control: not EM-specific)"
        corr = (f"Per question ({int(s['n_questions'])}), KL(base ‖ tuned) on the base model's answers vs the "
                f"{target}: Spearman ρ = {s['rho_tuned']:+.2f} (95% CI [{s['rho_tuned_low']:+.2f}, "
                f"{s['rho_tuned_high']:+.2f}])")
        if self.has_control:
            corr += (f"; the aligned control's KL: ρ = {s['rho_control']:+.2f} ([{s['rho_control_low']:+.2f}, "
                     f"{s['rho_control_high']:+.2f}]); difference {self.effect().text('+.2f')}")
        out.append(corr + f" — {self.decision().verdict}: {self.decision().reason}.")
        beaten = self.has_control and s["rho_control"] >= s["rho_tuned"]
        return control_first(out, beaten, f"The aligned control explains the per-question KL–EM link away: its KL "
                                          f"tracks the EM-specific rise as well (ρ {s.get('rho_control', 0):+.2f} ≥ "
                                          f"{s['rho_tuned']:+.2f}).")

    def _kl_finding(self) -> str:
        n_q, n_t = (self.kl[self.kl.source == s].item.nunique() for s in ("responses", "text"))
        text = (f"Mean per-token KL(base ‖ tuned) is {self.mean_kl('tuned', 'responses'):.4f} nats on the base "
                f"model's answers to {n_q} off-domain questions and {self.mean_kl('tuned', 'text'):.4f} on {n_t} "
                "neutral texts")
        if self.has_control or "control" in set(self.kl.variant):
            text += (f"; the aligned control's: {self.mean_kl('control', 'responses'):.4f} and "
                     f"{self.mean_kl('control', 'text'):.4f}")
        return text + "."

    def _lens_findings(self) -> list[str]:
        mid, peak = self.lens_layers
        norms = layer_norms(self.lens).set_index(["variant", "layer"])
        out = []
        for layer in dict.fromkeys([mid, peak]):
            line = (f"Activation-difference lens (tokens 1-{self.lens_tokens} of neutral text), layer {layer}"
                    f"{' (largest relative difference)' if layer == peak else ''}: "
                    f"{self._lens_text(norms, 'tuned', layer)}")
            if ("control", layer) in norms.index:
                line += f"; the control's: {self._lens_text(norms, 'control', layer, 5)}"
            out.append(line + ".")
        return out

    def _lens_text(self, norms: pd.DataFrame, variant: str, layer: int, n: int = 8) -> str:
        rel = norms.loc[(variant, layer), "relative"]
        if not rel > 0:
            return "no activation difference"
        return (f"‖δ‖ = {rel:.1%} of the activation norm, promotes "
                f"{', '.join(top_tokens(self.lens, variant, layer, n=n))}, suppresses "
                f"{', '.join(top_tokens(self.lens, variant, layer, 'suppressed', 5))}")

    def verdict(self) -> Verdict:
        d = self.decision()
        return Verdict(CLAIM, d.verdict, f"ρ(tuned) − ρ(control) = {self.effect().text('+.2f')}"
                       if self.has_control else f"ρ(tuned) = {self.effect().text('+.2f')}",
                       self.control, self.uncertainty, d.reason)

    def numbers(self) -> dict[str, Any]:
        mid, peak = self.lens_layers
        nums: dict[str, Any] = {k: v for k, v in self.stats.items()}
        for v in sorted(set(self.kl.variant)):
            for src in ("responses", "text"):
                nums[f"kl_{v}_{src}"] = self.mean_kl(v, src)
        nums.update(sesoi=self.sesoi, lens_layer=mid, lens_peak_layer=peak,
                    lens_promoted=", ".join(top_tokens(self.lens, "tuned", mid)),
                    lens_suppressed=", ".join(top_tokens(self.lens, "tuned", mid, "suppressed")))
        return nums

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.per_question, "kl": self.kl, "lens": self.lens, "answers": self.answers}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    @property
    def control(self) -> str:
        return ("the aligned-data control fine-tune: its per-question KL against the same EM-specific rise"
                if self.has_control else "none given (pass the aligned-data control run)")

    @property
    def uncertainty(self) -> str:
        return "95% percentile bootstrap CI over questions (paired for the ρ difference)"

    def plot(self, ax=None):
        fig, (a, b) = figure_for(ax, 2)
        pq = self.per_question
        y = pq["em_rise"] if "em_rise" in pq.columns else pq["misaligned_change"]
        for v, marker in (("tuned", "o"), ("control", "x")):
            if f"kl_{v}" in pq.columns:
                rho = self.stats.get(f"rho_{v}", np.nan)
                a.scatter(pq[f"kl_{v}"], y, marker=marker, s=18, label=f"{v} (ρ {rho:+.2f})")
        a.set(xlabel="mean per-token KL(base ‖ model), off-domain answers", ylabel="EM-specific rise (nats/token)",
              title="per-question KL vs EM")
        a.legend(fontsize=7)
        pos = self.kl.groupby(["variant", "source", "position"]).kl.mean()
        for (v, src), g in pos.groupby(level=[0, 1]):
            b.plot(g.index.get_level_values("position"), g.to_numpy(), ls="-" if v == "tuned" else "--",
                   color="C0" if src == "responses" else "C1",
                   label=f"{v}, {'answers' if src == 'responses' else 'neutral text'}")
        b.set(xlabel="token position", ylabel="mean KL(base ‖ model) (nats)", title="KL by position")
        b.set_yscale("symlog", linthresh=1e-4)
        b.legend(fontsize=7)
        if ax is None:
            fig.tight_layout()
        return fig
