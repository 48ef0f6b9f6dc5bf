"""Cross-model activation patching between a base model and its fine-tune.

Run the fine-tuned model with its residual stream at layer ``l`` (the last prompt token, or every prompt
position) replaced by the base model's activation for the same input (``base→tuned``), and the reverse
(``tuned→base``); report the fraction of the base-to-fine-tuned margin gap restored, with a bootstrap CI over
questions. Control: the same patch with another item's activation from the same source model. When the
control restores as much (or lies inside the real patch's CI), the first finding says so: any activation
of that model, not this item's, undoes the shift. See :mod:`emprobe.analysis.patch.sweep` for the mechanics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from emprobe.result import Result, Verdict, figure_for

_WHAT = {"base→tuned": ("Patching base activations into the fine-tuned model restores", "base",
                        "base activations at layer {layer} ({span}) undo the fine-tune's off-domain shift"),
         "tuned→base": ("Patching fine-tuned activations into the base model carries", "fine-tuned",
                        "fine-tuned activations at layer {layer} ({span}) carry the fine-tune's shift into the base "
                        "model")}


@dataclass(frozen=True)
class PatchResult(Result):
    """The patching sweep (one row per direction × layer × span × control) and the clean margins."""

    table: pd.DataFrame  # direction, layer, span, control, margin, fraction_restored, ci_low, ci_high
    margin_base: float
    margin_tuned: float
    gap_se: float  # standard error of the per-question gap (tuned − base)
    n_questions: int
    n_references: int
    meta: dict = field(default_factory=dict)

    name: ClassVar[str] = "patch"
    title: ClassVar[str] = "Activation patching (base ↔ fine-tuned)"

    @property
    def directions(self) -> list[str]:
        return list(dict.fromkeys(self.table.direction))

    def best(self, direction: str | None = None) -> dict[str, Any]:
        """The real patch restoring the largest share at its (layer, span), with the control at the same place."""
        direction = direction or self.directions[0]
        t = self.table[self.table.direction == direction]
        real = t[~t.control]
        row = real.loc[real.fraction_restored.idxmax()] if real.fraction_restored.notna().any() else real.iloc[0]
        ctrl = t[t.control & (t.layer == row.layer) & (t.span == row.span)].iloc[0]
        c, f = float(ctrl.fraction_restored), float(row.fraction_restored)
        return {"best_layer": int(row.layer), "best_span": str(row.span), "fraction_restored": f,
                "ci_low": float(row.ci_low), "ci_high": float(row.ci_high), "control_fraction": c,
                "control_beats_effect": bool(c >= f or row.ci_low <= c <= row.ci_high)}

    def numbers(self) -> dict[str, Any]:
        gap = self.margin_tuned - self.margin_base
        out = {"margin_base": self.margin_base, "margin_tuned": self.margin_tuned, "gap": gap, "gap_se": self.gap_se,
               "gap_established": bool(gap > 2 * self.gap_se), "n_questions": self.n_questions,
               "n_references": self.n_references}
        for i, direction in enumerate(self.directions):  # the first direction unprefixed, others by name
            prefix = "" if i == 0 else direction.replace("→", "_to_") + "_"
            out.update({prefix + k: v for k, v in self.best(direction).items()})
        return out

    def _flags(self, n: dict) -> list[str]:
        flags = []
        if not n["gap_established"]:
            flags.append(f"The fine-tune's gap is not established: {n['gap']:+.3f} is not more than 2 SE "
                         f"({2 * n['gap_se']:.3f}) above zero on these {self.n_questions} questions, so the fractions "
                         "below are unstable; use more questions or a longer fine-tune.")
        for direction in self.directions:
            b, src = self.best(direction), _WHAT[direction][1]
            where = f"layer {b['best_layer']} ({b['best_span']}, {direction})"
            if b["control_fraction"] >= b["fraction_restored"]:
                flags.append(f"The control beats the effect: patching another item's {src} activation restores "
                             f"{b['control_fraction']:.2f} of the gap, as much as or more than the real patch's "
                             f"{b['fraction_restored']:.2f} at {where}; any {src} activation undoes the shift.")
            elif b["control_beats_effect"]:
                flags.append(f"The control beats the effect: the control patch's {b['control_fraction']:.2f} lies inside "
                             f"the real patch's 95% CI [{b['ci_low']:.2f}, {b['ci_high']:.2f}] (real "
                             f"{b['fraction_restored']:.2f} at {where}), so the real patch is not distinguishable from "
                             f"another item's {src} activation.")
        return flags

    def findings(self) -> list[str]:
        n = self.numbers()
        body = [f"The fine-tune moves the mean margin from {self.margin_base:+.3f} (base) to {self.margin_tuned:+.3f} "
                f"over {self.n_questions} questions (gap {n['gap']:+.3f} ± {self.gap_se:.3f} SE)."]
        for direction in self.directions:
            b = self.best(direction)
            body.append(f"{_WHAT[direction][0]} the largest share of the gap at layer {b['best_layer']} "
                        f"({b['best_span']}): {b['fraction_restored']:.2f} of it (95% bootstrap CI [{b['ci_low']:.2f}, "
                        f"{b['ci_high']:.2f}]); the control patch (another item's {_WHAT[direction][1]} activation) "
                        f"gives {b['control_fraction']:.2f}.")
        return self._flags(n) + body

    def verdict(self) -> Verdict:
        n, direction = self.numbers(), self.directions[0]
        b = self.best(direction)
        if not n["gap_established"]:
            v, why = "inconclusive", "the fine-tune's gap is not more than 2 SE above zero"
        elif b["control_fraction"] >= b["fraction_restored"]:
            v, why = "not supported", "the control patch (another item's activation) restores as much"
        elif b["control_beats_effect"]:
            v, why = "inconclusive", "the control's value lies inside the real patch's CI"
        elif b["ci_low"] <= 0:
            v, why = "inconclusive", "the real patch's CI includes zero"
        else:
            v, why = "supported", "the real patch's CI lies above zero and above the control"
        return Verdict(_WHAT[direction][2].format(layer=b["best_layer"], span=b["best_span"]), v,
                       f"{b['fraction_restored']:.2f} of the gap restored ({direction})",
                       f"another item's activation: {b['control_fraction']:.2f}",
                       f"95% bootstrap CI [{b['ci_low']:.2f}, {b['ci_high']:.2f}] over {self.n_questions} questions", why)

    @property
    def control(self) -> str:
        return "patch with another item's activation from the same source model (shuffled rows)"

    @property
    def uncertainty(self) -> str:
        return "bootstrap 95% CI over questions"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table}

    def inputs(self) -> dict[str, Any]:
        real = self.table[~self.table.control]
        return {**self.meta, "layers": sorted(int(x) for x in set(real.layer)),
                "spans": list(dict.fromkeys(real.span)), "directions": self.directions}

    def plot(self, ax=None):
        fig, axes = figure_for(ax, len(self.directions), 4.5, 3.8)
        real = self.table[~self.table.control]
        for ax_, direction in zip(axes, self.directions):
            sub = real[real.direction == direction].pivot(index="span", columns="layer", values="fraction_restored")
            im = ax_.imshow(sub.to_numpy(dtype=float), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
            ax_.set_xticks(range(len(sub.columns)), [str(c) for c in sub.columns], fontsize=7)
            ax_.set_yticks(range(len(sub.index)), list(sub.index), fontsize=7)
            ax_.set(xlabel="layer (output of block l)", title=f"{direction}: fraction of gap")
            fig.colorbar(im, ax=ax_, fraction=0.046)
        return fig
