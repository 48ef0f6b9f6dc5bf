"""``PatchResult``: per-question margins of every patching cell and of the clean models; the cross-fitted effect
(each question's restored part at a cell chosen on the other half of the questions) with its CI over questions and
its excess over the another-question control, decided under the one verdict rule (see
:mod:`emprobe.analysis.patch.compute`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.causal_effect import CausalEffect, t_effect
from emprobe.analysis.stats.verdict import Effect
from emprobe.result import Result, Verdict, figure_for

_WHAT = {"base→tuned": ("Patching base activations into the fine-tuned model", "base",
                        "base activations undo the fine-tune's off-domain shift"),
         "tuned→base": ("Patching fine-tuned activations into the base model", "fine-tuned",
                        "fine-tuned activations carry the fine-tune's shift into the base model")}


@dataclass(frozen=True)
class PatchResult(Result):
    """``table``: question_id, direction, layer, span, control, margin; ``clean``: question_id, margin_base,
    margin_tuned, half (the question's half for the cross-fitted cell choice)."""

    table: pd.DataFrame
    clean: pd.DataFrame
    min_fraction: float
    meta: dict = field(default_factory=dict)

    name: ClassVar[str] = "patch"
    title: ClassVar[str] = "Activation patching (base ↔ fine-tuned)"

    @property
    def directions(self) -> list[str]:
        return list(dict.fromkeys(self.table.direction))

    @property
    def n_questions(self) -> int:
        return len(self.clean)

    # ---- derived numbers ---------------------------------------------------------------------------
    def _restored(self, direction: str) -> tuple[pd.DataFrame, Effect]:
        """``[cell (layer, span, control), question]`` part of the gap restored (nats/token, towards the target
        model) and the gap itself (t-interval over questions)."""
        c = self.clean.set_index("question_id")
        start, target = (c.margin_tuned, c.margin_base) if direction == "base→tuned" else (c.margin_base, c.margin_tuned)
        sign = 1.0 if (target - start).mean() >= 0 else -1.0
        t = self.table[self.table.direction == direction]
        m = t.pivot_table(index=["layer", "span", "control"], columns="question_id", values="margin")[c.index]
        return sign * (m - start), t_effect(sign * (target - start).to_numpy())

    def chosen(self, direction: str | None = None) -> dict[int, tuple[int, str]]:
        """``{half: (layer, span)}``: the cell with the largest mean restored on the *other* half."""
        r, _ = self._restored(direction or self.directions[0])
        real = r.xs(False, level="control")
        half = self.clean.set_index("question_id").half
        out = {}
        for h in sorted(set(half)):
            other = [q for q in real.columns if half[q] != h] or list(real.columns)
            out[int(h)] = real[other].mean(axis=1).idxmax()
        return out

    def effect(self, direction: str | None = None) -> CausalEffect:
        direction = direction or self.directions[0]
        r, gap = self._restored(direction)
        half = self.clean.set_index("question_id").half
        cells = self.chosen(direction)
        eff = np.array([r.loc[(*cells[int(half[q])], False), q] for q in r.columns])
        ctl = np.array([r.loc[(*cells[int(half[q])], True), q] for q in r.columns])
        sesoi = self.min_fraction * gap.estimate if gap.estimate > 0 else float("nan")
        return CausalEffect.measure(eff, ctl[None], sesoi, ("another-question",))

    def _numbers(self, direction: str) -> dict[str, Any]:
        e, (_, gap) = self.effect(direction), self._restored(direction)
        cells = self.chosen(direction)
        return {**{k: v for k, v in e.numbers().items() if k in ("effect", "effect_ci_low", "effect_ci_high", "excess",
                                                                 "excess_ci_low", "excess_ci_high", "control_mean")},
                "fraction_restored": e.effect.estimate / gap.estimate if gap.estimate > 0 else float("nan"),
                "control_fraction": e.control_means[0] / gap.estimate if gap.estimate > 0 else float("nan"),
                "cells": "; ".join(f"half {h}: layer {l_} ({s})" for h, (l_, s) in cells.items()),
                "controls_match": e.controls_match}

    def numbers(self) -> dict[str, Any]:
        _, gap = self._restored(self.directions[0])
        c = self.clean
        out = {"margin_base": float(c.margin_base.mean()), "margin_tuned": float(c.margin_tuned.mean()),
               "gap": gap.estimate, "gap_ci_low": gap.ci_low, "gap_ci_high": gap.ci_high,
               "gap_established": bool(gap.ci_low > 0), "n_questions": self.n_questions,
               "sesoi": self.min_fraction * gap.estimate if gap.estimate > 0 else float("nan")}
        for i, direction in enumerate(self.directions):  # the first direction unprefixed, others by name
            prefix = "" if i == 0 else direction.replace("→", "_to_") + "_"
            out.update({prefix + k: v for k, v in self._numbers(direction).items()})
        return out

    # ---- rendering ---------------------------------------------------------------------------------
    def _flags(self, n: dict) -> list[str]:
        flags = []
        if not n["gap_established"]:
            flags.append(f"The fine-tune's gap is not established on these {self.n_questions} questions "
                         f"({_gap_text(n)}), so the parts restored below "
                         "cannot decide anything; use more questions or a longer fine-tune.")
        for direction in self.directions:
            e, src = self.effect(direction), _WHAT[direction][1]
            if e.controls_match:
                flags.append(f"The control matches the effect ({direction}): another question's {src} activation "
                             f"restores {e.control_means[0]:+.3f} nats/token vs the real patch's {e.effect.text()}; "
                             f"excess {e.excess.text()}.")
        return flags

    def findings(self) -> list[str]:
        n = self.numbers()
        body = [f"The fine-tune moves the mean margin from {n['margin_base']:+.3f} (base) to {n['margin_tuned']:+.3f} "
                f"over {self.n_questions} questions (gap {_gap_text(n)})."]
        for direction in self.directions:
            e, x = self.effect(direction), self._numbers(direction)
            body.append(f"{_WHAT[direction][0]} at a cell chosen on the other half of the questions ({x['cells']}) "
                        f"restores {e.effect.text()} nats/token of the gap ({x['fraction_restored']:.2f} of it); "
                        f"another question's {_WHAT[direction][1]} activation at the same cell restores "
                        f"{e.control_means[0]:+.3f} ({x['control_fraction']:.2f}); excess {e.excess.text()}.")
        n_cells, n_q = len(self.table[["layer", "span"]].drop_duplicates()), self.table.question_id.nunique()
        body.append(f"The heatmap shows all {n_cells} (layer, span) cells on all {n_q} questions: descriptive only, "
                    "the verdict uses the cross-fitted cells.")
        return self._flags(n) + body

    def verdict(self) -> Verdict:
        n, direction = self.numbers(), self.directions[0]
        e = self.effect(direction)
        why = None if n["gap_established"] else f"no fine-tune gap is established on these questions ({_gap_text(n)})"
        d = e.decision(cannot_test=why)
        return Verdict(f"{_WHAT[direction][2]} (cell chosen on held-out questions)", d.verdict,
                       f"{e.effect.text()} nats/token restored ({n['fraction_restored']:.2f} of the gap; {direction})",
                       f"another question's activation: {e.control_means[0]:+.3f}",
                       f"95% t-interval over {e.n_questions} questions; excess over the control {e.excess.text()}",
                       d.reason)

    @property
    def control(self) -> str:
        return "the same patch with another question's activation from the same source model (never the same prompt)"

    @property
    def uncertainty(self) -> str:
        return "95% t-interval over questions; cells chosen on the other half of the questions (cross-fitted)"

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table, "clean": self.clean}

    def inputs(self) -> dict[str, Any]:
        real = self.table[~self.table.control]
        return {**self.meta, "layers": sorted(int(x) for x in set(real.layer)),
                "spans": list(dict.fromkeys(real.span)), "directions": self.directions}

    def plot(self, ax=None):
        fig, axes = figure_for(ax, len(self.directions), 4.5, 3.8)
        for ax_, direction in zip(axes, self.directions):
            r, gap = self._restored(direction)
            frac = (r.xs(False, level="control").mean(axis=1) / gap.estimate).unstack("layer")
            im = ax_.imshow(frac.to_numpy(dtype=float), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1)
            ax_.set_xticks(range(len(frac.columns)), [str(c) for c in frac.columns], fontsize=7)
            ax_.set_yticks(range(len(frac.index)), list(frac.index), fontsize=7)
            ax_.set(xlabel="layer (output of block l)", title=f"{direction}: fraction of gap (descriptive)")
            fig.colorbar(im, ax=ax_, fraction=0.046)
        return fig


def _gap_text(n: dict) -> str:
    return f"{n['gap']:+.3f}, 95% CI [{n['gap_ci_low']:+.3f}, {n['gap_ci_high']:+.3f}]"
