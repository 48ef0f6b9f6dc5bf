"""``TrackResult``: what :func:`emprobe.analysis.track.compute.track` measured, rendered on demand.

The headline number per direction is its :class:`Shift`: the change of the mean eval-prompt projection
from the first to the last checkpoint at the direction's best layer, with a bootstrap CI over questions,
set against the same change along random unit directions at that layer (z). The shift *explains
nothing* when random directions move as much (|z| < 2) and points the wrong way when it is negative
(the directions point from aligned to misaligned); either is said in the first finding.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats import bootstrap_ci, zscore_vs_null
from emprobe.result import Result, figure_for

Z_CONTROL = 2.0  # |z| below this: the random-direction control explains the shift


@dataclass(frozen=True)
class Shift:
    """One direction's projection shift between two checkpoints, against random directions."""

    direction: str
    layer: int
    step_from: int
    step_to: int
    delta: float  # mean over questions of the per-question projection change
    ci_low: float
    ci_high: float
    random_mean: float
    random_sd: float
    z: float
    n_questions: int

    @property
    def explained_by_control(self) -> bool:
        """Random directions move as much (|z| < 2, or no control to tell)."""
        return not abs(self.z) >= Z_CONTROL

    @property
    def wrong_sign(self) -> bool:
        """The shift points away from the misaligned side of the direction."""
        return self.delta < 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class TrackResult(Result):
    """Projections, mean-activation drift, refit cosines and the adapter trajectory over a run's checkpoints."""

    projections: pd.DataFrame  # step, direction, layer, question_id, projection
    drift: pd.DataFrame  # step, layer, drift_norm, mean_norm, random_0..
    refit: pd.DataFrame | None = None  # step, direction, layer, refit_cosine
    adapter: pd.DataFrame | None = None  # step, module, norm_A, norm_B, cos_B_to_final, local_cos_B
    layers: dict[str, int] = field(default_factory=dict)  # direction -> its headline layer
    n_random: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "track"
    title: ClassVar[str] = "Directions through training"

    @property
    def steps(self) -> list[int]:
        return sorted(int(s) for s in self.projections.step.unique())

    @cached_property
    def shifts(self) -> dict[str, Shift]:
        """Per direction: the first-to-last-checkpoint :class:`Shift` at its headline layer."""
        first, last = self.steps[0], self.steps[-1]
        out = {}
        for label, layer in self.layers.items():
            g = self.projections[(self.projections.direction == label) & (self.projections.layer == layer)]
            a = g[g.step == first].set_index("question_id").projection
            delta = (g[g.step == last].set_index("question_id").projection.loc[a.index] - a).to_numpy()
            lo, hi = bootstrap_ci(delta)
            rand = self._random_shift(layer, first, last)
            sd = float(rand.std(ddof=1)) if len(rand) > 1 else float("nan")
            z = zscore_vs_null(float(delta.mean()), rand) if len(rand) > 1 else float("nan")
            out[label] = Shift(label, int(layer), first, last, float(delta.mean()), lo, hi,
                               float(rand.mean()) if len(rand) else float("nan"), sd, float(z), len(delta))
        return out

    def _random_shift(self, layer: int, first: int, last: int) -> np.ndarray:
        dr = self.drift[self.drift.layer == layer].set_index("step")
        return np.array([dr.loc[last, f"random_{r}"] - dr.loc[first, f"random_{r}"] for r in range(self.n_random)])

    def _refit_at(self, label: str, layer: int, step: int) -> float | None:
        if self.refit is None:
            return None
        r = self.refit[(self.refit.direction == label) & (self.refit.layer == layer) & (self.refit.step == step)]
        return float(r.refit_cosine.iloc[0]) if len(r) else None

    def _sharpest_turn(self) -> pd.Series | None:
        if self.adapter is None:
            return None
        allm = self.adapter[self.adapter.module == "<all>"].dropna(subset=["local_cos_B"])
        return allm.loc[allm.local_cos_B.idxmin()] if len(allm) else None

    # ---- rendering ------------------------------------------------------------------------------
    def findings(self) -> list[str]:
        warnings, out = [], []
        for label, s in self.shifts.items():
            if s.wrong_sign:
                warnings.append(f"Wrong sign: along the base-model {label} direction (layer {s.layer}) the eval-prompt "
                                f"projection moves {s.delta:+.3f}, toward the aligned side, from step {s.step_from} "
                                f"to step {s.step_to}.")
            elif np.isnan(s.z):
                warnings.append(f"No random-direction control for the {label} shift ({self.n_random} random "
                                "directions; 2 or more are needed): nothing tells it from any fine-tune's shift.")
            elif s.explained_by_control:
                warnings.append(f"The random-direction control explains the {label} shift: {s.delta:+.3f} at layer "
                                f"{s.layer} against {s.random_mean:+.3f} ± {s.random_sd:.3f} along random unit "
                                f"directions (z = {s.z:.1f}, |z| < {Z_CONTROL:g}).")
            out.append(f"Along the base-model {label} direction at layer {s.layer}, the mean eval-prompt projection "
                       f"moves {s.delta:+.3f} from step {s.step_from} to step {s.step_to} (95% bootstrap CI over "
                       f"{s.n_questions} questions [{s.ci_low:+.3f}, {s.ci_high:+.3f}]); random unit directions move "
                       f"{s.random_mean:+.3f} ± {s.random_sd:.3f} (z = {s.z:.1f}).")
            cos = self._refit_at(label, s.layer, s.step_to)
            if cos is not None:
                out.append(f"Refit at step {s.step_to}, the {label} direction keeps cosine {cos:.3f} with the "
                           f"base-model direction at layer {s.layer}.")
        dip = self._sharpest_turn()
        if dip is not None:
            out.append(f"The adapter's B trajectory turns most sharply at step {int(dip.step)} (local cosine "
                       f"{dip.local_cos_B:.3f}; model-organisms phase-transition score).")
        return warnings + out

    def numbers(self) -> dict[str, Any]:
        steps = self.steps
        out: dict[str, Any] = {"n_steps": len(steps), "step_first": steps[0], "step_last": steps[-1],
                               "n_random": self.n_random}
        for label, s in self.shifts.items():
            out.update({f"{label}_{k}": v for k, v in s.to_dict().items()
                        if k not in ("direction", "step_from", "step_to")})
            cos = self._refit_at(label, s.layer, s.step_to)
            if cos is not None:
                out[f"{label}_refit_cosine"] = cos
        dip = self._sharpest_turn()
        if dip is not None:
            out.update({"adapter_turn_step": int(dip.step), "adapter_turn_local_cos": float(dip.local_cos_B)})
        return out

    def summary(self) -> dict[str, Any]:
        """``summary.json`` also keeps the per-direction ``shifts`` and the ``steps`` (as before the typed API)."""
        from emprobe.io import json_safe

        return {**super().summary(), **json_safe({"steps": self.steps,
                                                  "shifts": {k: s.to_dict() for k, s in self.shifts.items()}})}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    def tables(self) -> dict[str, pd.DataFrame]:
        extra = {"refit": self.refit, "adapter": self.adapter}
        return {"table": self.projections, "drift": self.drift, **{k: v for k, v in extra.items() if v is not None}}

    @property
    def control(self) -> str:
        return f"{self.n_random} random unit directions (same prompts, same checkpoints)"

    @property
    def uncertainty(self) -> str:
        return "bootstrap 95% CI over questions; z against random directions"

    def plot(self, ax=None):
        third = self.refit is not None or self.adapter is not None
        fig, axes = figure_for(ax, 3 if third else 2)
        drift, proj = self.drift, self.projections
        rcols = [c for c in drift.columns if c.startswith("random_")]
        for i, (label, layer) in enumerate(self.layers.items()):
            m = proj[(proj.direction == label) & (proj.layer == layer)].groupby("step").projection.mean()
            axes[0].plot(m.index, m - m.iloc[0], marker="o", color=f"C{i}", label=f"{label} L{layer}")
            g = drift[drift.layer == layer].sort_values("step")  # random directions at the same layer
            if rcols:
                rshift = g[rcols].to_numpy() - g[rcols].to_numpy()[0]
                axes[0].fill_between(g.step, rshift.min(1), rshift.max(1), color=f"C{i}", alpha=0.12)
        for layer, g in drift.groupby("layer"):
            g = g.sort_values("step")
            axes[1].plot(g.step, g.drift_norm, label=f"L{layer}", lw=0.8)
        axes[0].set(xlabel="step", ylabel="Δ mean projection", title="direction projection (band: random, same layer)")
        axes[0].legend(fontsize=7)
        axes[1].set(xlabel="step", ylabel="‖mean − mean@0‖", title="mean-activation drift")
        if self.refit is not None:
            for _, g in self.refit.groupby(["direction", "layer"]):
                axes[2].plot(g.step, g.refit_cosine, lw=0.8)
            axes[2].set(xlabel="step", ylabel="cosine to base direction", title="refit direction")
        elif self.adapter is not None:
            allm = self.adapter[self.adapter.module == "<all>"].sort_values("step")
            axes[2].plot(allm.step, allm.norm_B, marker="o", label="‖B‖ (all modules)")
            axes[2].set(xlabel="step", ylabel="‖B‖", title="LoRA adapter trajectory")
        return fig
