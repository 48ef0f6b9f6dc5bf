"""``DynamicsResult``: in-domain loss vs off-domain alignment, and claim 1's verdict, rendered on demand.

The verdict (:mod:`emprobe.analysis.dynamics.decision`): EM must be established first (the misaligned runs' rise
over step 0 has a CI above 0); the SESOI is a stated fraction of the EM-specific rise (or an absolute gap); then
every matched-loss gap's 90 % TOST interval inside ±SESOI is "supported", a gap of at least the SESOI shown after
Holm's correction is "not supported", anything else "inconclusive". Gaps carry a hierarchical bootstrap CI (runs of
a schedule, then questions); the seed-to-seed spread of the final margin is reported as the noise floor.

The within-run Spearman ρ(loss, margin) is reported but is not the verdict: two monotone series over a
few checkpoints give ρ = −1 for any fine-tune.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.dynamics.decision import Sesoi, decide_claim, sesois
from emprobe.analysis.dynamics.matched_loss import MatchedLoss
from emprobe.result import Result, Verdict, figure_for

CLAIM = "Learning schedules give no better-aligned minimum at similar or lower in-domain loss"


@dataclass(frozen=True, eq=False)
class DynamicsResult(Result):
    """Checkpoints (loss, margin), rank correlations, the EM rise, and the schedules compared at matched loss."""

    checkpoints: pd.DataFrame  # run, schedule, lr, data, step, train_loss, val_loss, ood_score, control
    correlations: pd.DataFrame  # scope, n, spearman_rho, p_two_sided, control
    best_at_loss: pd.DataFrame  # schedule, loss_level, n_checkpoints, best_ood_score, run, step
    comparison: MatchedLoss
    rises: pd.DataFrame  # per dataset: the misaligned runs' rise, control change, EM-specific rise (rise.RISE_COLUMNS)
    noise: dict[str, float]  # seed-to-seed SD of the final margin: sd, n_cells, n_runs
    margins: pd.DataFrame | None = None  # long: one row per (run, checkpoint, question)
    controls: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    #: claim 1's SESOI, declared before looking: this fraction of the EM-specific rise, or ``sesoi`` (nats/token)
    sesoi_fraction: float = 0.25
    sesoi: float | None = None

    name: ClassVar[str] = "dynamics"
    title: ClassVar[str] = "In-domain loss vs off-domain alignment"

    # ---- derived numbers ----------------------------------------------------------------------------
    @property
    def n_schedules(self) -> int:
        """Most non-control schedules trained on one dataset."""
        non = self.checkpoints[~self.checkpoints.control]
        return int(non.groupby("data").schedule.nunique().max())

    @property
    def limits(self) -> dict[str, Sesoi]:
        """Per dataset: the smallest gap of interest and how it was set (NaN with the reason when none)."""
        return sesois(self.rises, self.sesoi_fraction, self.sesoi)

    def decision(self):
        """``(Decision, deciding gap row or None)`` under the one rule."""
        return decide_claim(self.comparison.gaps, self.limits, self.shared_fraction)

    @property
    def shared_fraction(self) -> float:
        """The loss range every schedule reaches, as a fraction of the range any reaches (smallest over
        datasets with two or more schedules; NaN when none has)."""
        fracs = []
        for _, g in self.comparison.ranges.groupby("data"):
            span = g.loss_max.max() - g.loss_min.min()
            if len(g) > 1 and span > 0:
                fracs.append(max(0.0, float(g.shared_high.iloc[0] - g.shared_low.iloc[0]) / span))
        return min(fracs) if fracs else float("nan")

    def equivalence_bound(self) -> float:
        """The largest |TOST end| over every gap (NaN if none): the smallest SESOI the data would call alike."""
        g = self.comparison.gaps
        return float(np.nanmax(np.abs(g[["tost_low", "tost_high"]].to_numpy()))) if len(g) else float("nan")

    def _pooled(self) -> pd.Series:
        c = self.correlations
        return c[c.scope == "all runs"].iloc[0]

    # ---- rendering ----------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        control = "schedules compared at the same in-domain loss" + (
            f"; aligned-data control runs left out ({', '.join(self.controls)})" if self.controls else "")
        if self.comparison.gaps.empty:
            reason = (f"{self.n_schedules} schedule(s) among the non-control runs (a comparison needs 2)"
                      if self.n_schedules < 2 else f"the {self.n_schedules} schedules share no in-domain loss range")
            return Verdict(CLAIM, "inconclusive", "no matched-loss comparison", control, "none", reason)
        d, row = self.decision()
        limits = "; ".join(f"{k}: {v.text}" for k, v in self.limits.items() if v.usable)
        reason = d.reason + (f". SESOI: {limits}" if limits else "")
        if row is None:
            return Verdict(CLAIM, d.verdict, "no comparison of a dataset with EM established", control,
                           self.uncertainty, reason)
        return Verdict(CLAIM, d.verdict, self._number(row), control, self._uncertainty(row), reason)

    def _number(self, row: pd.Series) -> str:
        return f"{row.schedule_a} − {row.schedule_b} off-domain margin {row.gap:+.4f} at val loss {row.loss_level:.3f}"

    def _uncertainty(self, row: pd.Series) -> str:
        if not np.isfinite(row.ci_low):
            return "no CI (one run per schedule, no per-question margins)"
        return (f"95% CI [{row.ci_low:+.4f}, {row.ci_high:+.4f}], 90% TOST [{row.tost_low:+.4f}, {row.tost_high:+.4f}] "
                f"(hierarchical bootstrap over {int(row.n_runs)} runs and the questions, t on {row.df:.1f} df; "
                f"Holm p = {row.p_holm:.3g} over {self.comparison.n_comparisons} comparisons)")

    def findings(self) -> list[str]:
        v = self.verdict()
        head = {"supported": "Claim 1 is supported: the schedules are practically equivalent at matched loss",
                "not supported": "Claim 1 is not supported: a schedule reaches a better-aligned point at equal "
                                 "in-domain loss",
                "inconclusive": "Claim 1 is inconclusive here"}[v.verdict]
        unc = f"; {v.uncertainty}" if v.uncertainty not in ("none", self.uncertainty) else ""
        out = [f"{head} — {v.reason} (deciding gap: {v.number}{unc}).", *self._em_lines(), self._noise_line(),
               *self._matched_lines()]
        if self.controls:
            out.append(f"{len(self.controls)} aligned-data control run(s) ({', '.join(self.controls)}) are left out "
                       "of the schedule comparison (they give the control change of the EM-specific rise).")
        return out + self._rho_lines()

    def _em_lines(self) -> list[str]:
        out = []
        for r in self.rises.itertuples():
            if not np.isfinite(r.rise if r.rise is not None else np.nan):
                out.append(f"EM in {r.data}: {r.why}.")
                continue
            ctl = (f"; the aligned control changed it {r.control_change:+.4f}, EM-specific rise {r.em_specific:+.4f} "
                   f"(95% CI [{r.em_ci_low:+.4f}, {r.em_ci_high:+.4f}])" if r.n_control_runs else
                   "; no aligned control run")
            out.append(f"EM in {r.data}: the off-domain margin of {r.n_runs} misaligned run(s) rose {r.rise:+.4f} over "
                       f"step 0 (95% CI [{r.rise_ci_low:+.4f}, {r.rise_ci_high:+.4f}], {r.n_questions} questions){ctl}"
                       f" — {'established' if r.established else r.why}; SESOI: {self.limits[r.data].text}.")
        return out

    def _noise_line(self) -> str:
        n = self.noise
        if not np.isfinite(n.get("sd", np.nan)):
            return ("1 seed per dataset × schedule × learning rate: run-to-run (seed) noise is not measured, and the "
                    "CIs cover question sampling (and learning-rate variants within a schedule) only.")
        return (f"Noise floor: the seed-to-seed SD of the final off-domain margin is {n['sd']:.4f} nats/token (pooled "
                f"over {n['n_cells']} dataset × schedule × lr cells, {n['n_runs']} runs); the gap CIs include it.")

    def _matched_lines(self) -> list[str]:
        out, m = [], self.comparison.matched
        for data, g in m.groupby("data", sort=True):
            levels = sorted(g.loss_level.unique())
            mid = levels[len(levels) // 2]
            parts = [f"{r.schedule} {r.margin:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}] ({r.n_runs} runs)"
                     for r in g[g.loss_level == mid].itertuples()]
            out.append(f"Off-domain margin at val loss {mid:.3f} ({data}; 95% CI over runs and questions): "
                       + "; ".join(parts) + ".")
        for data, g in self.comparison.spread.groupby("data", sort=True):
            parts = [f"{r.spread:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}] at val loss {r.loss_level:.3f} (best {r.best}, "
                     f"worst {r.worst})" for r in g.itertuples()]
            out.append(f"Spread between schedules (max − min margin; 95% CI), {data}: " + "; ".join(parts) + ".")
        return out

    def _rho_lines(self) -> list[str]:
        p = self._pooled()
        runs = self.correlations[self.correlations.scope != "all runs"]
        n_ck = int(runs.n.max()) if len(runs) else int(p.n)
        out = [f"Across {int(p.n)} checkpoints of {self.checkpoints[~self.checkpoints.control].run.nunique()} "
               f"non-control runs, in-domain validation loss and off-domain margin have Spearman ρ = "
               f"{p.spearman_rho:.3f} (within-run permutation p = {p.p_two_sided:.3g}). This is not evidence "
               f"for the claim: two monotone series over few checkpoints (here ≤ {n_ck}) give ρ = −1 for any "
               "fine-tune."]
        for ctrl, g in runs.groupby("control", sort=True):
            who = "aligned-data control run" if ctrl else "non-control run"
            if len(g) == 1:
                r = g.iloc[0]
                out.append(f"Within the {who} {r.scope}: ρ = {r.spearman_rho:.3f} over {int(r.n)} checkpoints "
                           f"(p = {r.p_two_sided:.3g}).")
            else:
                out.append(f"Within each of {len(g)} {who}s: ρ from {g.spearman_rho.min():.3f} to "
                           f"{g.spearman_rho.max():.3f} (median {g.spearman_rho.median():.3f}; per run in "
                           "correlations.parquet).")
        return out

    def numbers(self) -> dict[str, Any]:
        ck, p = self.checkpoints, self._pooled()
        out: dict[str, Any] = {
            "n_runs": int(ck.run.nunique()), "n_checkpoints": len(ck), "spearman_rho": float(p.spearman_rho),
            "p_two_sided": float(p.p_two_sided), "n_control_runs": len(self.controls),
            "n_schedule_runs": int(ck[~ck.control].run.nunique()), "n_schedules": self.n_schedules,
            "n_loss_levels": int(self.comparison.matched.loss_level.nunique()),
            "n_comparisons": self.comparison.n_comparisons, "runs_per_schedule": self.comparison.runs_per_schedule,
            "shared_loss_fraction": self.shared_fraction, "sesoi_fraction": self.sesoi_fraction,
            "seed_sd": self.noise.get("sd", float("nan")), "seed_cells": self.noise.get("n_cells", 0)}
        for r in self.rises.itertuples():
            slug = re.sub(r"[^a-z0-9]+", "_", r.data.split(":")[-1].lower()).strip("_")
            tag = "" if len(self.rises) == 1 else f"_{slug}"
            out.update({f"em_rise{tag}": r.rise, f"em_rise_ci_low{tag}": r.rise_ci_low,
                        f"em_specific_rise{tag}": r.em_specific, f"em_established{tag}": bool(r.established),
                        f"sesoi{tag}": self.limits[r.data].value})
        if not self.comparison.gaps.empty:
            _, row = self.decision()
            out["equivalence_bound"] = self.equivalence_bound()
            if row is not None:
                out.update({"gap": float(row.gap), "gap_ci_low": float(row.ci_low), "gap_ci_high": float(row.ci_high),
                            "gap_tost_low": float(row.tost_low), "gap_tost_high": float(row.tost_high),
                            "gap_loss_level": float(row.loss_level), "gap_p_holm": float(row.p_holm),
                            "gap_significant": bool(row.better)})
        if len(self.comparison.spread):
            s = self.comparison.spread.loc[self.comparison.spread.spread.idxmax()]
            out.update({"spread_max": float(s.spread), "spread_ci_low": float(s.ci_low),
                        "spread_ci_high": float(s.ci_high)})
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        c = self.comparison
        out = {"table": self.checkpoints, "correlations": self.correlations, "best_at_loss": self.best_at_loss,
               "matched_loss": c.matched, "schedule_gaps": c.gaps, "schedule_spread": c.spread,
               "loss_ranges": c.ranges, "em_rise": self.rises}
        return {**out, **({"margins": self.margins} if self.margins is not None else {})}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    @property
    def control(self) -> str:
        return ("schedules compared at matched in-domain loss (aligned-data control runs never enter; they give the "
                "EM-specific rise the SESOI is tied to); within-run label permutation for ρ")

    @property
    def uncertainty(self) -> str:
        return ("hierarchical bootstrap (runs within a schedule, then questions), t intervals on Welch–Satterthwaite "
                "df: 95% CI per gap, 90% TOST for equivalence, Holm over the gaps for a shown difference; "
                "permutation p-values (two-sided) for ρ")

    def plot(self, ax=None):
        fig, (a0, a1) = figure_for(ax, 2, 5.5, 4)
        non = self.checkpoints[~self.checkpoints.control]
        for i, (sched, g) in enumerate(non.groupby("schedule", sort=True)):
            a0.scatter(g.val_loss, g.ood_score, s=18, color=f"C{i}", label=sched)
            for _, gr in g.groupby("run"):
                gr = gr.sort_values("step")
                a0.plot(gr.val_loss, gr.ood_score, lw=0.6, alpha=0.5, color=f"C{i}")
        for level in sorted(self.comparison.matched.loss_level.unique()):
            a0.axvline(level, color="grey", lw=0.5, ls=":")
        gaps = self.comparison.gaps
        span = float(np.ptp(gaps.loss_level)) if len(gaps) else 0.0
        several = gaps.data.nunique() > 1 if len(gaps) else False
        for k, ((data, a, b), g) in enumerate(gaps.groupby(["data", "schedule_a", "schedule_b"], sort=True)):
            x = g.loss_level + (k - 1) * 0.02 * (span or 1.0)  # pairs side by side at each level
            err = None if g.tost_low.isna().any() else [g.gap - g.tost_low, g.tost_high - g.gap]
            a1.errorbar(x, g.gap, yerr=err, marker="o", ms=4, capsize=3, lw=0.8,
                        label=f"{data}: {a} − {b}" if several else f"{a} − {b}")
        a1.axhline(0.0, color="black", lw=0.6)
        band = min((v.value for v in self.limits.values() if v.usable), default=float("nan"))
        if np.isfinite(band):
            a1.axhspan(-band, band, color="C2", alpha=0.1, lw=0,
                       label=f"±SESOI {band:.3g}: equivalent (every TOST interval inside → supported)")
        a0.set(xlabel="in-domain validation loss", ylabel="off-domain margin (higher = more misaligned)",
               title="every checkpoint of every non-control run")
        a1.set(xlabel="matched in-domain validation loss", ylabel="margin gap (90% TOST interval, runs and questions)",
               title="schedule gaps at matched loss (< 0: first better aligned)")
        for a in (a0, a1):
            a.invert_xaxis()
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=6)
        return fig
