"""``MonitorResult``: how well direction drift alone detects EM checkpoints, rendered on demand.

The control is a label permutation (chance AUROC 0.5). When it explains the AUROC (p ≥ 0.05) or the
drift runs the wrong way (AUROC < 0.5: EM checkpoints drift *less*), the first finding says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from emprobe.result import Result, control_first, figure_for

ALPHA = 0.05


@dataclass(frozen=True, eq=False)
class MonitorResult(Result):
    """Per-checkpoint drift, EM labels and detector scores; AUROC with its permutation p and leave-one-run-out."""

    table: pd.DataFrame  # run, step, ood_score, drift_best, drift_L*, em, loro_score
    auroc: float
    p_permutation: float
    null_mean: float
    auroc_loro: float
    n_runs: int
    n_fallback_runs: int
    n_layers: int
    threshold: float
    n_permutations: int
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "monitor"
    title: ClassVar[str] = "Detecting EM checkpoints from direction drift"

    @property
    def n_em(self) -> int:
        return int(self.table.em.sum())

    def findings(self) -> list[str]:
        main = [
            f"Direction drift alone separates EM checkpoints ({self.n_em} of {len(self.table)}: margin rise > "
            f"{self.threshold}) with AUROC {self.auroc:.3f} (label-permutation p = {self.p_permutation:.3g}; "
            f"chance {self.null_mean:.2f}).",
            f"Leave-one-run-out over {self.n_runs} runs, a logistic detector on drift at {self.n_layers} layers "
            f"scores AUROC {self.auroc_loro:.3f} ({self.n_fallback_runs} runs scored by raw drift).",
        ]
        if self.auroc < 0.5:
            return [f"Wrong sign: EM checkpoints drift less along the direction than the others "
                    f"(AUROC {self.auroc:.3f} < 0.5).", *main]
        return control_first(main, self.p_permutation >= ALPHA,
                             f"The label-permutation control explains the detector: AUROC {self.auroc:.3f} is "
                             f"within chance (p = {self.p_permutation:.3g} ≥ {ALPHA}).")

    def numbers(self) -> dict[str, Any]:
        return {"auroc": self.auroc, "p_permutation": self.p_permutation, "chance_auroc": self.null_mean,
                "auroc_leave_one_run_out": self.auroc_loro, "threshold": self.threshold, "n_em": self.n_em,
                "n_checkpoints": len(self.table), "n_runs": self.n_runs, "n_fallback_runs": self.n_fallback_runs}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.table}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    @property
    def control(self) -> str:
        return "label permutation (chance AUROC 0.5)"

    @property
    def uncertainty(self) -> str:
        return f"permutation p-value ({self.n_permutations} shuffles); leave-one-run-out"

    def plot(self, ax=None):
        fig, (a,) = figure_for(ax, 1)
        for em, g in self.table.groupby("em"):
            a.scatter(g.step, g.drift_best, label="EM" if em else "not EM", s=18)
        a.set(xlabel="step", ylabel="projection drift (best layer)", title=f"monitor: AUROC {self.auroc:.2f}")
        a.legend(fontsize=7)
        return fig
