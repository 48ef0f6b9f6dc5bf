"""``DynamicsResult``: in-domain loss vs off-domain alignment, and claim 1's verdict, rendered on demand.

Verdict on *learning schedules give no better-aligned minimum at similar or lower in-domain loss*:

- **not supported**: at some matched in-domain loss one schedule's off-domain margin is lower (better
  aligned) than another's by at least ``min_gap`` (0.02 nats/token by default) and the gap's CI (over
  questions, Bonferroni over comparisons) excludes 0;
- **supported** (practical equivalence): schedules were compared at matched loss over at least 20 % of the
  loss range and every gap's CI lies within ``±min_gap`` (a significant gap smaller than that is equivalence,
  not a better minimum);
- **inconclusive**: one schedule only, no (or too little) loss range shared by the schedules, no per-question
  margins to form a CI, or CIs too wide to tell equivalence from a gap of interest (absence of a significant
  gap is not evidence of equivalence).

The within-run Spearman ρ(loss, margin) is reported but is not the verdict: two monotone series over a
few checkpoints give ρ = −1 for any fine-tune.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.dynamics.matched_loss import MatchedLoss
from emprobe.result import Result, Verdict, figure_for

CLAIM = "Learning schedules give no better-aligned minimum at similar or lower in-domain loss"
MIN_SHARED = 0.2  # a shared loss range below this fraction of the whole cannot support "alike"


@dataclass(frozen=True, eq=False)
class DynamicsResult(Result):
    """Checkpoints (loss, margin), rank correlations, and the schedules compared at matched in-domain loss."""

    checkpoints: pd.DataFrame  # run, schedule, lr, data, step, train_loss, val_loss, ood_score, control
    correlations: pd.DataFrame  # scope, n, spearman_rho, p_two_sided, control
    best_at_loss: pd.DataFrame  # schedule, loss_level, n_checkpoints, best_ood_score, run, step
    comparison: MatchedLoss
    margins: pd.DataFrame | None = None  # long: one row per (run, checkpoint, question)
    controls: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    #: the smallest off-domain margin gap (nats/token) that counts as "better aligned": a gap beyond the CI but
    #: below it (with many questions, 0.001 can be significant) is a practical equivalence, not a better minimum
    min_gap: float = 0.02

    name: ClassVar[str] = "dynamics"
    title: ClassVar[str] = "In-domain loss vs off-domain alignment"

    # ---- derived numbers ----------------------------------------------------------------------------
    @property
    def n_schedules(self) -> int:
        """Most non-control schedules trained on one dataset."""
        non = self.checkpoints[~self.checkpoints.control]
        return int(non.groupby("data").schedule.nunique().max())

    def decisive_gap(self) -> pd.Series | None:
        """The gap that decides the verdict: the largest significant one (as better − worse schedule), else
        the largest by size."""
        g = self.comparison.gaps
        if g.empty:
            return None
        sig = g[g.better != ""]
        pool = sig if len(sig) else g
        row = pool.loc[pool.gap.abs().idxmax()].copy()
        if row.better and row.better == row.schedule_b:  # oriented as better − worse
            row.schedule_a, row.schedule_b = row.schedule_b, row.schedule_a
            row.gap, row.ci_low, row.ci_high = -row.gap, -row.ci_high, -row.ci_low
        return row

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

    def _pooled(self) -> pd.Series:
        c = self.correlations
        return c[c.scope == "all runs"].iloc[0]

    # ---- rendering ----------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        row = self.decisive_gap()
        control = "schedules compared at the same in-domain loss" + (
            f"; aligned-data control runs left out ({', '.join(self.controls)})" if self.controls else "")
        if row is None:
            reason = (f"{self.n_schedules} schedule(s) among the non-control runs (a comparison needs 2)"
                      if self.n_schedules < 2 else f"the {self.n_schedules} schedules share no in-domain loss range")
            return Verdict(CLAIM, "inconclusive", "no matched-loss comparison", control, "none", reason)
        if np.isnan(row.ci_low):
            return Verdict(CLAIM, "inconclusive", self._number(row), control, "none",
                           "no per-question margins: no CI over questions")
        number, unc = self._number(row), self._uncertainty(row)
        if row.better and abs(row.gap) >= self.min_gap:
            return Verdict(CLAIM, "not supported", number, control, unc,
                           f"{row.better} reaches a better-aligned point than {row.schedule_b} at equal in-domain loss")
        bound = self.equivalence_bound()
        if bound > self.min_gap:
            wide = self.widest_gap()
            return Verdict(CLAIM, "inconclusive", self._number(wide), control, self._uncertainty(wide),
                           f"no gap of {self.min_gap:g} nats/token or more is established, but the CIs allow gaps up "
                           f"to {bound:.3f} (> {self.min_gap:g}): too few questions to call the schedules alike")
        frac = self.shared_fraction
        if frac < MIN_SHARED:
            return Verdict(CLAIM, "inconclusive", number, control, unc,
                           f"the schedules share only {100 * frac:.0f}% of the in-domain loss range (< "
                           f"{100 * MIN_SHARED:.0f}%): too little to call them alike")
        within = f"every gap's CI lies within ±{self.min_gap:g} nats/token (largest bound {bound:.4f})"
        if row.better:
            return Verdict(CLAIM, "supported", number, control, unc,
                           f"the largest gap beyond the CI ({abs(row.gap):.4f}) is below the smallest gap of interest "
                           f"({self.min_gap:g} nats/token) and {within}: the schedules are practically equivalent "
                           "at matched loss")
        return Verdict(CLAIM, "supported", number, control, unc,
                       f"no schedule is better aligned than another beyond the CI at matched loss, and {within}")

    def _number(self, row: pd.Series) -> str:
        return f"{row.schedule_a} − {row.schedule_b} off-domain margin {row.gap:+.4f} at val loss {row.loss_level:.3f}"

    def _uncertainty(self, row: pd.Series) -> str:
        cmp = self.comparison
        return (f"{100 * cmp.ci_level:.1f}% bootstrap CI over questions [{row.ci_low:+.4f}, {row.ci_high:+.4f}] "
                f"(Bonferroni over {cmp.n_comparisons} comparisons)")

    def widest_gap(self) -> pd.Series:
        """The comparison whose CI allows the largest gap (:meth:`equivalence_bound`)."""
        g = self.comparison.gaps
        return g.loc[g[["ci_low", "ci_high"]].abs().max(axis=1).idxmax()]

    def equivalence_bound(self) -> float:
        """The largest gap any comparison's CI allows (max |CI end| over all matched-loss gaps; NaN if none)."""
        g = self.comparison.gaps
        return float(np.nanmax(np.abs(g[["ci_low", "ci_high"]].to_numpy()))) if len(g) else float("nan")

    def findings(self) -> list[str]:
        v, row = self.verdict(), self.decisive_gap()
        if v.verdict == "inconclusive":
            head = f"Claim 1 is inconclusive here: {v.reason}" + (
                f" (widest: {v.number}; {v.uncertainty})." if v.uncertainty != "none" else ".")
        elif v.verdict == "supported" and row is not None and row.better:
            head = (f"Claim 1 is supported: the schedules are practically equivalent at matched loss. The largest gap, "
                    f"{v.number} ({v.uncertainty}), lies beyond its CI but below the smallest gap of interest "
                    f"({self.min_gap:g} nats/token), and every CI lies within ±{self.min_gap:g} "
                    f"(largest bound {self.equivalence_bound():.4f}).")
        elif v.verdict == "not supported":
            head = (f"{row.better} reaches a better-aligned point than {row.schedule_b} at equal in-domain loss: "
                    f"{v.number} ({v.uncertainty}); the claim that schedules give no better-aligned minimum "
                    "is not supported.")
        else:
            head = (f"At {self.comparison.matched.loss_level.nunique()} matched in-domain loss levels no schedule "
                    f"is better aligned than another beyond the CI (largest gap: {v.number}; {v.uncertainty}), and "
                    f"every CI lies within ±{self.min_gap:g} nats/token (largest bound "
                    f"{self.equivalence_bound():.4f}): practically equivalent.")
        out = [head, *self._matched_lines()]
        if self.controls:
            out.append(f"{len(self.controls)} aligned-data control run(s) ({', '.join(self.controls)}) are left out "
                       "of the schedule comparison.")
        return out + self._rho_lines()

    def _matched_lines(self) -> list[str]:
        out, m = [], self.comparison.matched
        for data, g in m.groupby("data", sort=True):
            levels = sorted(g.loss_level.unique())
            mid = levels[len(levels) // 2]
            parts = [f"{r.schedule} {r.margin:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                     for r in g[g.loss_level == mid].itertuples()]
            out.append(f"Off-domain margin at val loss {mid:.3f} ({data}; 95% CI over questions): "
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
        ck, p, row = self.checkpoints, self._pooled(), self.decisive_gap()
        out: dict[str, Any] = {
            "n_runs": int(ck.run.nunique()), "n_checkpoints": len(ck), "spearman_rho": float(p.spearman_rho),
            "p_two_sided": float(p.p_two_sided), "n_control_runs": len(self.controls),
            "n_schedule_runs": int(ck[~ck.control].run.nunique()), "n_schedules": self.n_schedules,
            "n_loss_levels": int(self.comparison.matched.loss_level.nunique()),
            "n_comparisons": self.comparison.n_comparisons, "ci_level": self.comparison.ci_level,
            "shared_loss_fraction": self.shared_fraction}
        if row is not None:
            out.update({"gap": float(row.gap), "gap_ci_low": float(row.ci_low), "gap_ci_high": float(row.ci_high),
                        "gap_loss_level": float(row.loss_level), "gap_significant": bool(row.better),
                        "equivalence_bound": self.equivalence_bound(), "min_gap": self.min_gap})
        if len(self.comparison.spread):
            s = self.comparison.spread.loc[self.comparison.spread.spread.idxmax()]
            out.update({"spread_max": float(s.spread), "spread_ci_low": float(s.ci_low),
                        "spread_ci_high": float(s.ci_high)})
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        c = self.comparison
        out = {"table": self.checkpoints, "correlations": self.correlations, "best_at_loss": self.best_at_loss,
               "matched_loss": c.matched, "schedule_gaps": c.gaps, "schedule_spread": c.spread,
               "loss_ranges": c.ranges}
        return {**out, **({"margins": self.margins} if self.margins is not None else {})}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta)}

    @property
    def control(self) -> str:
        return ("schedules compared at matched in-domain loss (aligned-data control runs never enter); "
                "within-run label permutation for ρ (between-run differences do not count)")

    @property
    def uncertainty(self) -> str:
        return (f"bootstrap CI over questions ({100 * self.comparison.ci_level:.1f}% per gap, Bonferroni over "
                f"{self.comparison.n_comparisons} comparisons); permutation p-values (two-sided) for ρ")

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
            err = None if g.ci_low.isna().any() else [g.gap - g.ci_low, g.ci_high - g.gap]
            a1.errorbar(x, g.gap, yerr=err, marker="o", ms=4, capsize=3, lw=0.8,
                        label=f"{data}: {a} − {b}" if several else f"{a} − {b}")
        a1.axhline(0.0, color="black", lw=0.6)
        a1.axhspan(-self.min_gap, self.min_gap, color="C2", alpha=0.1, lw=0,
                   label=f"±{self.min_gap:g}: equivalent (every CI inside → supported)")
        a0.set(xlabel="in-domain validation loss", ylabel="off-domain margin (higher = more misaligned)",
               title="every checkpoint of every non-control run")
        a1.set(xlabel="matched in-domain validation loss", ylabel="margin gap (Bonferroni CI over questions)",
               title="schedule gaps at matched loss (< 0: first better aligned)")
        for a in (a0, a1):
            a.invert_xaxis()
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=6)
        return fig
