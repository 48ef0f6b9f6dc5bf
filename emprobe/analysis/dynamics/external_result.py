"""``ExternalDynamicsResult``: claim 1 on runs evaluated elsewhere (see :mod:`emprobe.analysis.dynamics.external`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import Decision, Effect, decide_equivalence
from emprobe.result import Result, Verdict, figure_for

CLAIM = "Learning schedules give no better-aligned minimum at similar or lower in-domain loss"
MIN_SHARED = 0.2  # a shared loss range below this fraction of the whole cannot support "alike"


@dataclass(frozen=True, eq=False)
class ExternalDynamicsResult(Result):
    """Runs' (eval loss, score) points, schedules at matched loss, their gaps, the closest run pairs, the noise."""

    points: pd.DataFrame  # data, name, run, unit, lr, seed, step, eval_loss (+CI), score (+CI)
    matched: pd.DataFrame  # data, level, loss_level, unit, score, ci_low, ci_high
    gaps: pd.DataFrame  # data, level, loss_level, unit_a, unit_b, gap (a − b, + = a better), ci, tost
    pairs: pd.DataFrame  # better, worse, score_gap (+CI), loss_diff (+CI)
    noise: pd.DataFrame  # the replicate / near-identical pairs behind the run-to-run noise
    score: str
    sesoi: float
    higher_is_better: bool
    n_comparisons: int
    alpha: float
    noise_source: str
    sigma_run: float
    sigma_loss: float
    excluded: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "dynamics"
    title: ClassVar[str] = "Claim 1 on external runs: in-domain loss vs off-domain score"

    # ---- the decision ---------------------------------------------------------------------------------
    def _oriented(self, row: pd.Series) -> pd.Series:
        """``row`` as better − worse (gap >= 0)."""
        row = row.copy()
        if row.gap < 0:
            row.unit_a, row.unit_b = row.unit_b, row.unit_a
            row.gap, row.ci_low, row.ci_high = -row.gap, -row.ci_high, -row.ci_low
            row.tost_low, row.tost_high = -row.tost_high, -row.tost_low
        return row

    def decisive_gap(self) -> pd.Series | None:
        """The largest gap of at least the SESOI whose CI excludes 0, else the gap whose TOST interval reaches
        farthest from 0 (the one that decides "supported")."""
        g = self.gaps.dropna(subset=["ci_low", "tost_low"])
        if g.empty:
            return None
        sig = g[((g.ci_low > 0) | (g.ci_high < 0)) & (g.gap.abs() >= self.sesoi)]
        if len(sig):
            return self._oriented(sig.loc[sig.gap.abs().idxmax()])
        reach = g[["tost_low", "tost_high"]].abs().max(axis=1)
        return self._oriented(g.loc[reach.idxmax()])

    @property
    def shared_fraction(self) -> float:
        """The loss range every schedule reaches, as a fraction of the runs' whole loss range (NaN for fixed
        levels)."""
        fr = []
        for data, g in self.matched.groupby("data"):
            q = pd.to_numeric(g.level, errors="coerce")
            span = np.ptp(self.points[self.points.data == data].eval_loss)
            if q.notna().all() and q.max() > q.min() and span > 0:
                fr.append(float((g.loss_level.max() - g.loss_level.min()) / (q.max() - q.min()) / span))
        return min(fr) if fr else float("nan")

    def decision(self) -> Decision:
        row = self.decisive_gap()
        units = self.points.groupby("data").unit.nunique().max()
        if row is None:
            why = (f"{units} schedule(s) per dataset (a comparison needs 2)" if units < 2 else
                   "the schedules share no eval-loss range (or too few bootstrap replicates reach it)")
            return Decision("inconclusive", why)
        diff = Effect(row.gap, row.ci_low, row.ci_high, 1 - self.alpha / max(self.n_comparisons, 1))
        tost = Effect(row.gap, row.tost_low, row.tost_high, 1 - 2 * self.alpha)
        d = decide_equivalence(diff, tost, self.sesoi, units=self._units(), fmt="+.2f")
        frac = self.shared_fraction
        if d.verdict == "supported" and frac < MIN_SHARED:
            return Decision("inconclusive", f"the schedules share only {100 * frac:.0f}% of the eval-loss range "
                                            f"(< {100 * MIN_SHARED:.0f}%): too little to call them alike")
        return d

    def _units(self) -> str:
        return "nats/token" if self.score == "margin" else f"{self.score} points"

    def equivalence_bound(self) -> float:
        """The largest gap any comparison's TOST interval allows."""
        g = self.gaps[["tost_low", "tost_high"]].abs()
        return float(np.nanmax(g.to_numpy())) if len(g) and g.notna().any().any() else float("nan")

    # ---- rendering ------------------------------------------------------------------------------------
    def verdict(self) -> Verdict:
        d, row = self.decision(), self.decisive_gap()
        number = "no matched-loss comparison" if row is None else self._gap_text(row)
        unc = "none" if row is None else (
            f"{100 * (1 - self.alpha / max(self.n_comparisons, 1)):.2f}% CI [{row.ci_low:+.2f}, {row.ci_high:+.2f}] "
            f"(Bonferroni over {self.n_comparisons}), 90% TOST [{row.tost_low:+.2f}, {row.tost_high:+.2f}]; "
            + self._noise_text())
        return Verdict(CLAIM, d.verdict, number, self.control, unc, d.reason)

    def _gap_text(self, row: pd.Series) -> str:
        return (f"{row.unit_a} better aligned than {row.unit_b} by {row.gap:.2f} {self._units()} at eval loss "
                f"{row.loss_level:.4f}")

    def _noise_text(self) -> str:
        if not np.isfinite(self.sigma_run):
            return ("run-to-run noise not estimated (no replicate seeds or near-identical schedules): the CIs "
                    "cover question and held-out-sequence sampling only")
        return (f"run-to-run sd {self.sigma_run:.2f} {self._units()} and {self.sigma_loss:.4f} nats of eval loss "
                f"from {len(self.noise)} {self.noise_source} pairs, added to every run")

    def findings(self) -> list[str]:
        v, p = self.verdict(), self.points
        head = {"not supported": f"Claim 1 is not supported on these runs: {v.number} ({v.uncertainty}).",
                "supported": f"Claim 1 is supported on these runs: {v.reason}; largest gap {v.number}.",
                "inconclusive": f"Claim 1 is inconclusive on these runs: {v.reason}"
                                + (f" (decisive gap: {v.number}; {v.uncertainty})." if v.number[:2] != "no"
                                   else ".")}[v.verdict]
        rho = p.eval_loss.corr(p.score, method="spearman") if len(p) > 2 else float("nan")
        out = [head, f"{len(p)} runs, {p.unit.nunique()} schedules, {self._n_questions()} questions: eval loss "
                     f"{p.eval_loss.min():.4f}-{p.eval_loss.max():.4f}, mean {self.score} {p.score.min():.1f}-"
                     f"{p.score.max():.1f} (Spearman ρ loss vs {self.score} across runs {rho:+.2f}); {self._shared()}; "
                     f"smallest gap of interest {self.sesoi:g} {self._units()}, declared before looking."]
        noise = self._noise_text()
        out += self._matched_lines() + self._pair_lines() + [noise[0].upper() + noise[1:] + "."]
        out.append("These results carry no pre-fine-tuning scores: that EM happened is not checked here.")
        if self.excluded:
            out.append(f"{len(self.excluded)} run(s) left out: " + "; ".join(
                f"{k} ({v})" for k, v in list(self.excluded.items())[:3]) + ".")
        return out

    def _shared(self) -> str:
        m = self.matched
        if m.empty:
            return "no eval-loss range shared by the schedules"
        frac = self.shared_fraction
        share = f" ({100 * frac:.0f}% of the runs' range)" if np.isfinite(frac) else ""
        return f"schedules compared at eval loss {m.loss_level.min():.4f}-{m.loss_level.max():.4f}{share}"

    def _n_questions(self) -> str:
        n, u = self.meta.get("n_questions") or {}, self.meta.get("n_question_units") or {}
        return ", ".join(f"{n[k]}" + (f" ({u[k]} independent: format variants resampled together)"
                                      if u.get(k, n[k]) != n[k] else "") for k in n) or "?"

    def _matched_lines(self) -> list[str]:
        out = []
        for data, g in self.matched.groupby("data", sort=True):
            levels = list(dict.fromkeys(g.level))
            mid = levels[len(levels) // 2]
            m = g[g.level == mid].sort_values("score", ascending=not self.higher_is_better)
            parts = [f"{r.unit} {r.score:.1f} [{r.ci_low:.1f}, {r.ci_high:.1f}]" for r in m.itertuples()]
            out.append(f"{self.score} at matched eval loss {m.loss_level.iloc[0]:.4f} ({data}; 95% CI): "
                       + "; ".join(parts) + ".")
        return out

    def _pair_lines(self) -> list[str]:
        if self.pairs.empty:
            return ["No run is better aligned than another at similar or lower eval loss."]
        parts = [f"{r.unit_better} lr {r.lr_better} vs {r.unit_worse} lr {r.lr_worse}: {r.score_gap:+.2f} "
                 f"[{r.gap_ci_low:+.2f}, {r.gap_ci_high:+.2f}] at Δloss {r.loss_diff:+.4f} "
                 f"[{r.loss_ci_low:+.4f}, {r.loss_ci_high:+.4f}]" for r in self.pairs.head(3).itertuples()]
        return ["Closest to 'better aligned at similar or lower loss' (run pairs; 95% CIs): " + "; ".join(parts) + "."]

    def numbers(self) -> dict[str, Any]:
        row = self.decisive_gap()
        out: dict[str, Any] = {
            "score": self.score, "sesoi": self.sesoi, "n_runs": len(self.points),
            "n_schedules": int(self.points.unit.nunique()), "n_comparisons": self.n_comparisons,
            "equivalence_bound": self.equivalence_bound(), "shared_loss_fraction": self.shared_fraction,
            "sigma_run": self.sigma_run, "sigma_loss": self.sigma_loss, "n_noise_pairs": len(self.noise),
            "noise_source": self.noise_source, "n_excluded": len(self.excluded)}
        if row is not None:
            out.update({"gap": float(row.gap), "gap_ci_low": float(row.ci_low), "gap_ci_high": float(row.ci_high),
                        "gap_tost_low": float(row.tost_low), "gap_tost_high": float(row.tost_high),
                        "gap_loss_level": float(row.loss_level), "gap_better": row.unit_a, "gap_worse": row.unit_b})
        if len(self.pairs):
            out.update({"closest_pair_gap": float(self.pairs.score_gap.iloc[0]),
                        "closest_pair_loss_diff": float(self.pairs.loss_diff.iloc[0])})
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.points, "matched_loss": self.matched, "schedule_gaps": self.gaps,
                "closest_pairs": self.pairs, "noise_pairs": self.noise}

    def inputs(self) -> dict[str, Any]:
        return {"inputs": dict(self.meta), "excluded": dict(self.excluded)}

    @property
    def control(self) -> str:
        return "schedules compared at matched in-domain eval loss, interpolated along each schedule's path"

    @property
    def uncertainty(self) -> str:
        return ("joint bootstrap over questions (paired across runs) and held-out sequences; " + self._noise_text())

    def plot(self, ax=None):
        fig, (a0, a1) = figure_for(ax, 2, 5.8, 4.2)
        for i, (unit, g) in enumerate(self.points.groupby("unit", sort=True)):
            g = g.sort_values("eval_loss")
            a0.errorbar(g.eval_loss, g.score, xerr=[g.eval_loss - g.loss_ci_low, g.loss_ci_high - g.eval_loss],
                        yerr=[g.score - g.score_ci_low, g.score_ci_high - g.score], fmt="o-", ms=3, lw=0.8,
                        capsize=2, color=f"C{i % 10}", label=unit)
        for level in self.matched.loss_level.unique():
            a0.axvline(level, color="grey", lw=0.5, ls=":")
        a0.set(xlabel="in-domain eval loss (95% CI over held-out sequences)",
               ylabel=f"mean {self.score} (95% CI)", title="every run (lines: a schedule's learning rates)")
        for k, ((a, b), g) in enumerate(self.gaps.groupby(["unit_a", "unit_b"], sort=True)):
            a1.errorbar(g.loss_level + 1e-4 * (k % 9 - 4), g.gap, yerr=[g.gap - g.tost_low, g.tost_high - g.gap],
                        fmt=".", ms=3, lw=0.6, color=f"C{k % 10}", alpha=0.7)
        a1.axhline(0, color="black", lw=0.6)
        a1.axhspan(-self.sesoi, self.sesoi, color="C2", alpha=0.12, lw=0, label=f"±SESOI {self.sesoi:g}")
        a1.set(xlabel="matched eval loss", ylabel=f"{self.score} gap, schedule pairs (90% TOST)",
               title="gaps at matched loss (inside the band: equivalent)")
        a0.legend(fontsize=6)
        a1.legend(fontsize=7)
        return fig
