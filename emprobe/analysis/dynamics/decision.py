"""Claim 1's verdict under the one rule (:mod:`emprobe.analysis.stats.verdict`).

Claim: *learning schedules give no better-aligned minimum at similar or lower in-domain loss* — a claim of no
difference in every matched-loss comparison. Its smallest effect of interest is declared before looking at the
gaps: a stated fraction (default 25 %) of the dataset's established EM-specific rise (misaligned runs' rise minus
the aligned control's change; the misaligned runs' rise alone without a control), or an absolute margin gap in
nats/token. Before any gap is read, EM must be established: a dataset whose misaligned runs' rise has a CI touching 0
(or, for a fractional SESOI, whose EM-specific rise does) cannot say whether schedules differ in EM, so it leaves the
comparison ("inconclusive: no EM established" when no dataset is left). Flat margins never give "supported".

- **supported**: every gap's 90 % TOST interval lies inside ±SESOI (and the schedules share ≥ 20 % of the loss
  range);
- **not supported**: some gap of at least the SESOI is shown (Holm-adjusted p < 0.05) — that schedule reaches a
  better-aligned point at the same in-domain loss;
- **inconclusive**: otherwise (CIs too wide for the questions and runs at hand; say which).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import INCONCLUSIVE, Decision, Effect, decide_all_equivalent

MIN_SHARED = 0.2  # a shared loss range below this fraction of the whole cannot support "alike"


@dataclass(frozen=True)
class Sesoi:
    """One dataset's smallest gap of interest (NaN when none can be set) and how it was set (or why not)."""

    value: float
    text: str

    @property
    def usable(self) -> bool:
        return bool(np.isfinite(self.value) and self.value > 0)


def sesois(rises: pd.DataFrame, fraction: float, absolute: float | None) -> dict[str, Sesoi]:
    """Per dataset: the SESOI (see the module docstring)."""
    out = {}
    for r in rises.itertuples():
        if not r.established:
            unmeasured = "single checkpoint" in str(r.why)
            out[r.data] = Sesoi(absolute, f"{absolute:g} nats/token (absolute; EM not checked: {r.why})") \
                if absolute and unmeasured else Sesoi(float("nan"), str(r.why))
        elif absolute:
            out[r.data] = Sesoi(absolute, f"{absolute:g} nats/token (absolute)")
        elif r.n_control_runs and not r.em_ci_low > 0:
            ci = f"95% CI [{r.em_ci_low:+.4f}, {r.em_ci_high:+.4f}]"
            out[r.data] = Sesoi(float("nan"), f"no EM-specific rise established: misaligned − aligned control "
                                              f"{r.em_specific:+.4f} ({ci}) touches 0, so no fraction of it can be a margin")
        else:
            base, what = (r.em_specific, "EM-specific rise") if r.n_control_runs else (r.rise, "misaligned runs' rise "
                                                                                        "(no aligned control)")
            out[r.data] = Sesoi(fraction * base, f"{fraction * base:.4f} nats/token = {fraction:.0%} of the {what} "
                                                 f"{base:+.4f}")
    return out


def gap_label(row) -> str:
    return f"{row.schedule_a} − {row.schedule_b} at val loss {row.loss_level:.3f} ({row.data})"


def decide_claim(gaps: pd.DataFrame, limits: dict[str, Sesoi], shared_fraction: float
                 ) -> tuple[Decision, pd.Series | None]:
    """The verdict over every matched-loss gap, and the gap that decided it."""
    use = gaps[gaps.data.map(lambda d: d in limits and limits[d].usable)]
    left_out = sorted({d for d in gaps.data if not (d in limits and limits[d].usable)})
    why_out = "; ".join(f"{d}: {limits[d].text if d in limits else 'no rise measured'}" for d in left_out)
    if use.empty:
        return Decision(INCONCLUSIVE, why_out or "no comparison could be made"), None
    comps = {gap_label(r): (Effect(r.gap, r.ci_low, r.ci_high), Effect(r.gap, r.tost_low, r.tost_high, 0.90), r.p,
                            limits[r.data].value) for r in use.itertuples()}
    d = decide_all_equivalent(comps, units="nats/token", fmt="+.4f")
    row = use.iloc[list(comps).index(d.about)] if d.about in comps else None
    reason = d.reason
    if d.verdict == INCONCLUSIVE and not np.isfinite(use[["ci_low", "ci_high"]].to_numpy(float)).all():
        reason = "no CI: one run per schedule and no per-question margins"
    elif d.verdict == INCONCLUSIVE:
        reason += ": too few questions or runs to call the schedules alike"
    elif d.supported and shared_fraction < MIN_SHARED:
        d = Decision(INCONCLUSIVE, d.reason, d.about)
        reason = (f"the schedules share only {100 * shared_fraction:.0f}% of the in-domain loss range (< "
                  f"{100 * MIN_SHARED:.0f}%): too little to call them alike")
    if left_out:
        reason += f" (left out, {why_out})"
    return Decision(d.verdict, reason, d.about), row
