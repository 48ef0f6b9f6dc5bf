"""``MarginsResult``: margins at every scored checkpoint and the per-question EM-specific rises, rendered on demand.

The findings describe the first misaligned run with a control (the primary contrast): its mean margin change
over questions with a 95% bootstrap CI and a sign-flip p, the control's change, the EM-specific rise
(misaligned − control change) with its own CI — said first when the control explains the rise away — how the
two runs' per-question changes correlate, and how uneven the rise is across questions. Without a control each
run's change from step 0 is reported instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats import bootstrap_ci, sign_flip_pvalue, spearman, t_interval
from emprobe.result import Result, control_first, figure_for

VALUES = ["base", "misaligned_change", "control_change", "em_rise"]
RISE_COLUMNS = ["question_id", "pair", *VALUES, "category"]


@dataclass(frozen=True, eq=False)
class MarginsResult(Result):
    """``pairs``: run, step, question_id, category, pair, margin; ``margins``: one row per (run, step, question)
    with the run's schedule / lr / data and the checkpoint's losses; ``rises``: per (misaligned run, question,
    pair) ``base, misaligned_change, control_change, em_rise``; ``controls``: misaligned run -> its control."""

    pairs: pd.DataFrame
    margins: pd.DataFrame
    rises: pd.DataFrame
    controls: dict[str, str] = field(default_factory=dict)
    control_runs: tuple[str, ...] = ()
    n_permutations: int = 1000
    seed: int = 0
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "margins"
    title: ClassVar[str] = "Off-domain misalignment (judge-free margin)"

    # ---- tables ---------------------------------------------------------------------------------
    @property
    def primary(self) -> str | None:
        """The misaligned run the findings describe (the first one with a control)."""
        return next(iter(self.controls), None)

    def last_step(self, run: str) -> int:
        return int(self.pairs[self.pairs.run == run].step.max())

    def per_question(self, run: str | None = None) -> pd.DataFrame:
        """Per question of ``run`` (default: the primary): mean ``base``, ``misaligned_change``, ``control_change``,
        ``em_rise`` over its reference pairs, the rise's 95% t-interval over pairs and ``n_pairs``."""
        r = self.rises[self.rises.run == (run or self.primary)]
        g = r.groupby("question_id", sort=False)
        out = g[VALUES].mean()
        ci = g.em_rise.apply(lambda v: t_interval(v.to_numpy(float)))
        out["em_rise_ci_low"], out["em_rise_ci_high"] = [c[0] for c in ci], [c[1] for c in ci]
        out["n_pairs"] = g.size()
        return out.assign(category=g.category.first())

    def loss_margins(self) -> pd.DataFrame:
        """``margins`` of the checkpoints that have a validation loss (what loss-vs-alignment analyses relate)."""
        from emprobe.errors import DataError

        df = self.margins
        if df.empty or df.val_loss.isna().all():
            raise DataError("no checkpoint has both a validation loss and a score")
        return df.dropna(subset=["val_loss"]).reset_index(drop=True)

    def top_questions(self, n: int = 5) -> dict[str, float]:
        """The ``n`` largest per-question EM-specific rises of the primary run."""
        top = self.per_question().em_rise.sort_values(ascending=False).head(n)
        return {str(q): float(v) for q, v in top.items()}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.pairs, "rises": self.rises, "margins": self.margins}

    # ---- findings -------------------------------------------------------------------------------
    def _stats(self) -> dict[str, Any]:
        per_q, r = self.per_question(), self.rises[self.rises.run == self.primary]
        rise, em, ctl = per_q.misaligned_change, per_q.em_rise, per_q.control_change
        lo, hi = bootstrap_ci(rise.to_numpy(), seed=self.seed)
        lo2, hi2 = bootstrap_ci(em.to_numpy(), seed=self.seed)
        return {"margin_base": per_q.base.mean(), "rise": rise.mean(), "rise_ci_low": lo, "rise_ci_high": hi,
                "rise_p": sign_flip_pvalue(rise.to_numpy(), self.n_permutations, self.seed),
                "control_change": ctl.mean(), "em_rise": em.mean(), "em_rise_ci_low": lo2, "em_rise_ci_high": hi2,
                "em_rise_p": sign_flip_pvalue(em.to_numpy(), self.n_permutations, self.seed),
                "rho_rise_control": spearman(rise.to_numpy(), ctl.to_numpy()),
                "questions_up": int((rise > 0).sum()), "n_questions": len(per_q), "n_pairs": int(r.pair.nunique()),
                "em_rise_sd": em.std(ddof=1)}

    def numbers(self) -> dict[str, Any]:
        if self.primary is None:
            return {f"{run}_change": v for run, v in self._changes().items()}
        return self._stats()

    def _changes(self) -> dict[str, float]:
        """Each run's mean per-question margin change from step 0 to its last step (first pair)."""
        first = self.pairs[self.pairs.pair == 0]
        out = {}
        for run, g in first.groupby("run", sort=False):
            m = g.groupby("step").margin.mean()
            out[str(run)] = float(m.iloc[-1] - m.loc[0]) if 0 in m.index else float("nan")
        return out

    def findings(self) -> list[str]:
        if self.primary is None:
            return [f"{run}: mean margin change {v:+.3f} nats/token from step 0 to its last checkpoint (first "
                    "reference pair; no aligned-data control given, so the change includes fine-tuning as such)."
                    for run, v in self._changes().items()]
        s, em = self._stats(), self.per_question().em_rise
        top = em.sort_values(ascending=False)
        out = [
            f"After {self.last_step(self.primary)} steps the misaligned model's mean margin over {s['n_questions']} "
            f"off-domain questions ({s['n_pairs']} reference pair(s) each) changes {s['rise']:+.3f} nats/token (95% "
            f"bootstrap CI [{s['rise_ci_low']:+.3f}, {s['rise_ci_high']:+.3f}], sign-flip p = {s['rise_p']:.3g}); "
            f"{s['questions_up']} of {s['n_questions']} questions move towards the misaligned answers.",
            f"The aligned control changes it {s['control_change']:+.3f}; the EM-specific rise (misaligned change − "
            f"control change) is {s['em_rise']:+.3f} (95% CI [{s['em_rise_ci_low']:+.3f}, "
            f"{s['em_rise_ci_high']:+.3f}], sign-flip p = {s['em_rise_p']:.3g}).",
            f"Per question, the misaligned run's change and the control's change correlate (Spearman ρ = "
            f"{s['rho_rise_control']:+.2f}): that part of each question's rise moves with any fine-tune, so "
            "per-question analyses use the EM-specific rise.",
            "EM is uneven: the largest EM-specific rises are "
            f"{', '.join(f'{q} {v:+.3f}' for q, v in top.head(3).items())}; sd across questions {s['em_rise_sd']:.3f}.",
        ]
        return control_first(out, s["em_rise_ci_low"] <= 0, f"The aligned control explains the rise away: the "
                             f"EM-specific rise {s['em_rise']:+.3f} has a 95% CI [{s['em_rise_ci_low']:+.3f}, "
                             f"{s['em_rise_ci_high']:+.3f}] that includes 0.")

    @property
    def control(self) -> str:
        if self.primary is None:
            return "none given (pass controls= to subtract an aligned-data fine-tune's change)"
        return "aligned-data control fine-tune (same prompts, same steps): its change is subtracted"

    @property
    def uncertainty(self) -> str:
        return f"95% bootstrap CI over questions; sign-flip permutation p ({self.n_permutations} flips)"

    def inputs(self) -> dict[str, Any]:
        return dict(self.meta)

    # ---- plot -----------------------------------------------------------------------------------
    def plot(self, ax=None):
        n = 2 if self.primary is not None else 1
        fig, axes = figure_for(ax, n)
        ax1 = axes[0]
        first = self.pairs[self.pairs.pair == 0]
        for run, g in first.groupby("run", sort=False):
            base = g[g.step == 0].set_index("question_id").margin
            ch = g.assign(change=g.margin.to_numpy() - base.reindex(g.question_id).to_numpy()).groupby("step").change
            m, se = ch.mean(), ch.std(ddof=1).fillna(0) / np.sqrt(ch.count())
            ax1.errorbar(m.index, m, yerr=1.96 * se, marker="o", capsize=3,
                         ls="--" if run in self.control_runs else "-", label=run)
        ax1.axhline(0, color="k", lw=0.8)
        ax1.set(xlabel="step", ylabel="mean margin − base (nats/token, pair 0)", title="off-domain margin change")
        ax1.legend(fontsize=6)
        if n == 2:
            top = self.per_question().em_rise.sort_values(ascending=False)
            ax2 = axes[1]
            ax2.barh(range(len(top)), top.to_numpy(), color="C3")
            ax2.set_yticks(range(len(top)), [str(q)[:22] for q in top.index], fontsize=5)
            ax2.invert_yaxis()
            ax2.axvline(0, color="k", lw=0.8)
            ax2.set(xlabel="EM-specific rise (misaligned − control change)", title="per-question EM")
        return fig
