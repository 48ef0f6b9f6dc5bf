"""``OverlapResult``: train/eval shift overlap, misaligned vs the aligned control, raw and mean-removed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.analysis.stats.verdict import Decision, Effect, decide, decide_all
from emprobe.result import Result, Verdict, control_first, figure_for

CLAIM = ("activation shifts on training prompts and eval prompts share a subspace specific to misaligned training. "
         "As tested, on eval questions held out from the layer/k choice, against the aligned-data control: (a) the "
         "top-k subspaces of training- and eval-prompt shifts (common shift removed) overlap more after misaligned "
         "than after aligned training, and (b) prompts with similar base activations get more similar shifts "
         "after misaligned than after aligned training (pair-similarity ρ); both by at least their SESOI")


@dataclass(frozen=True, eq=False)
class OverlapResult(Result):
    """``sweep``: run × layer × k × shifts (raw / mean_removed) overlaps; ``shifts``: per (run, layer) shift
    statistics and pair-similarity ρ; ``test``: the decision at (``layer``, ``k``) on the held-out half."""

    name: ClassVar[str] = "overlap"
    title: ClassVar[str] = "Training vs evaluation activation shifts"

    sweep: pd.DataFrame
    shifts: pd.DataFrame
    test: pd.DataFrame
    selection: pd.DataFrame
    layer: int
    k: int
    layer_select: str
    has_control: bool
    n_train: int
    n_eval: int
    d_model: int
    pair_test: dict[str, float] = field(default_factory=dict)  # pair ρ per run on the test rows; misaligned − control
    sesoi: float = 0.05  # misaligned − control mean-removed overlap
    sesoi_pair_rho: float = 0.1  # misaligned − control pair-similarity ρ
    meta: dict[str, Any] = field(default_factory=dict)

    # ---- lookups -------------------------------------------------------------------------------
    def tested(self, shifts: str = "mean_removed") -> pd.Series:
        return self.test.set_index("shifts").loc[shifts]

    def at(self, run: str = "misaligned", shifts: str = "raw") -> pd.Series | None:
        """The sweep row of ``run`` at the chosen (layer, k)."""
        s = self.sweep
        m = (s.run == run) & (s.layer == self.layer) & (s.k == self.k) & (s.shifts == shifts)
        return s[m].iloc[0] if m.any() else None

    def shift_row(self, run: str = "misaligned") -> pd.Series | None:
        s = self.shifts
        m = (s.run == run) & (s.layer == self.layer)
        return s[m].iloc[0] if m.any() else None

    # ---- Result ----------------------------------------------------------------------------------
    def numbers(self) -> dict[str, Any]:
        raw, mr = self.at(), self.at(shifts="mean_removed")
        sh, shc = self.shift_row(), self.shift_row("control")
        out = {"layer": self.layer, "k": self.k, "overlap": raw.overlap, "random_mean": raw.random_mean,
               "random_sd": raw.random_sd, "z": raw.z, "overlap_mean_removed": mr.overlap if mr is not None else np.nan,
               "mean_shift_cosine": sh.mean_shift_cosine, "common_fraction_train": sh.common_fraction_train,
               "common_fraction_eval": sh.common_fraction_eval, "pair_rho": sh.pair_rho, "pair_p": sh.pair_p,
               "n_train": self.n_train, "n_eval": self.n_eval}
        for shifts, tag in (("raw", "raw"), ("mean_removed", "mr")):
            t = self.tested(shifts)
            out[f"test_overlap_{tag}"] = t.overlap_misaligned
            if self.has_control:
                out.update({f"test_overlap_control_{tag}": t.overlap_control, f"diff_{tag}": t["diff"],
                            f"diff_{tag}_ci_low": t.diff_ci_low, f"diff_{tag}_ci_high": t.diff_ci_high})
        if self.has_control:
            c = self.at("control")
            out.update(overlap_control=c.overlap, pair_rho_control=shc.pair_rho, pair_p_control=shc.pair_p,
                       common_fraction_train_control=shc.common_fraction_train)
        out["n_test_questions"] = int(self.tested().n_test_questions)
        out.update({f"test_{k}": v for k, v in self.pair_test.items() if k.startswith("pair_")},
                   sesoi=self.sesoi, sesoi_pair_rho=self.sesoi_pair_rho)
        return out

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.sweep, "shifts": self.shifts, "test": self.test, "selection": self.selection}

    @property
    def control(self) -> str:
        base = ("the aligned-data control run's shifts (same prompts, same layer and k)" if self.has_control
                else "no aligned-data control given")
        return f"{base}; random k-subspaces (secondary: any fine-tune beats them); question-label permutation"

    @property
    def uncertainty(self) -> str:
        t = self.tested()
        return (f"paired bootstrap 95% CIs (misaligned − control) over training prompts (subsets for pair ρ) and "
                f"{int(t.n_test_questions)} held-out eval questions ({int(t.n_boot)} draws); layer/k "
                f"{self.layer_select}; permutation p for each run's pair ρ")

    def parts(self) -> dict[str, Decision]:
        """Each half of the claim decided under the one rule (with a control)."""
        t, pt = self.tested(), self.pair_test
        wide = f"too few held-out questions ({int(t.n_test_questions)}) to tell"
        ov = Effect(t["diff"], t.diff_ci_low, t.diff_ci_high)
        pr = Effect(*(pt.get(k, np.nan) for k in ("pair_diff", "pair_diff_ci_low", "pair_diff_ci_high")))
        return {"overlap": decide(ov, self.sesoi, wide=wide),
                "pair similarity": decide(pr, self.sesoi_pair_rho, wide=wide)}

    def verdict(self) -> Verdict:
        t = self.tested()
        if not self.has_control:
            return Verdict(CLAIM, "inconclusive", f"mean-removed overlap {t.overlap_misaligned:.3f} (misaligned only)",
                           self.control, self.uncertainty, "no aligned-data control to compare with")
        pt = self.pair_test
        number = (f"misaligned − control mean-removed overlap {t['diff']:+.3f} (95% CI [{t.diff_ci_low:+.3f}, "
                  f"{t.diff_ci_high:+.3f}]), pair-similarity ρ {pt['pair_diff']:+.3f} (95% CI "
                  f"[{pt['pair_diff_ci_low']:+.3f}, {pt['pair_diff_ci_high']:+.3f}]) at layer {self.layer}, "
                  f"k = {self.k}")
        d = decide_all(self.parts())
        sesoi = f"SESOI: overlap {self.sesoi:g}, pair ρ {self.sesoi_pair_rho:g}"
        return Verdict(CLAIM, d.verdict, number, self.control, self.uncertainty, f"{d.reason} ({sesoi})")

    def findings(self) -> list[str]:
        raw, mr, sh = self.at(), self.at(shifts="mean_removed"), self.shift_row()
        t, tr = self.tested(), self.tested("raw")
        out = [f"At layer {self.layer} (k = {self.k}, {self.layer_select}), the top-{self.k} subspaces of training- "
               f"and eval-prompt shifts of the misaligned run overlap {raw.overlap:.3f} (mean squared cosine of "
               f"principal angles; {mr.overlap:.3f} with each set's mean shift removed); the common shift carries "
               f"{sh.common_fraction_train:.0%} / {sh.common_fraction_eval:.0%} of the train / eval shift energy."]
        if self.has_control:
            c, cm, shc = self.at("control"), self.at("control", "mean_removed"), self.shift_row("control")
            out.append(f"The aligned control at the same layer and k: overlap {c.overlap:.3f} ({cm.overlap:.3f} mean-"
                       f"removed); on the held-out questions misaligned − control = {tr['diff']:+.3f} raw (95% CI "
                       f"[{tr.diff_ci_low:+.3f}, {tr.diff_ci_high:+.3f}]) and {t['diff']:+.3f} mean-removed (95% CI "
                       f"[{t.diff_ci_low:+.3f}, {t.diff_ci_high:+.3f}]).")
            out.append(f"Prompt-similarity vs shift-similarity over {int(sh.n_pairs)} (training subset, eval question) "
                       f"pairs: Spearman ρ = {sh.pair_rho:.3f} (p = {sh.pair_p:.3g}) misaligned, {shc.pair_rho:.3f} "
                       f"(p = {shc.pair_p:.3g}) aligned control.")
        else:
            out.append(f"Prompt-similarity vs shift-similarity over {int(sh.n_pairs)} pairs: Spearman ρ = "
                       f"{sh.pair_rho:.3f} (p = {sh.pair_p:.3g}). No aligned control: specificity is untested.")
        out.append(f"Secondary reference: random {self.k}-subspaces overlap {raw.random_mean:.4f} ± {raw.random_sd:.4f} "
                   f"(k/d = {self.k / self.d_model:.4f}; z = {raw.z:.1f}) — any fine-tune that moves every prompt "
                   f"alike beats them.")
        if self.has_control:
            pt = self.pair_test
            out.insert(3, f"On the {int(pt['n_questions'])} held-out questions × {int(pt['n_subsets'])} training "
                          f"subsets: "
                          f"pair ρ {pt['pair_rho_misaligned']:.3f} misaligned, {pt['pair_rho_control']:.3f} control; "
                          f"misaligned − control {pt['pair_diff']:+.3f} (paired bootstrap 95% CI "
                          f"[{pt['pair_diff_ci_low']:+.3f}, {pt['pair_diff_ci_high']:+.3f}]).")
            v = self.verdict()
            out.insert(0, f"Claim 3 is {v.verdict}: {v.reason}.")
        beaten = self.has_control and bool(np.isfinite(t["diff"])) and not t.diff_ci_low > 0
        msg = (f"The aligned control shows the same overlap: misaligned − control mean-removed overlap "
               f"{t['diff']:+.3f} (95% CI [{t.diff_ci_low:+.3f}, {t.diff_ci_high:+.3f}])." if beaten else "")
        return control_first(out, beaten, msg)

    def plot(self, ax=None):
        fig, (ax1, ax2) = figure_for(ax, 2)
        s = self.sweep[self.sweep.k == self.k]
        for (run, shifts), g in s.groupby(["run", "shifts"]):
            ax1.plot(g.layer, g.overlap, marker="o" if run == "misaligned" else "s", ms=3,
                     ls="-" if shifts == "raw" else "--", label=f"{run}, {shifts}")
        ax1.plot(s.layer.unique(), [s.random_mean.iloc[0]] * s.layer.nunique(), ls=":", color="grey", lw=0.8,
                 label="random subspaces")
        ax1.axvline(self.layer, color="k", lw=0.6)
        ax1.set(xlabel="layer (output of block l)", ylabel=f"top-{self.k} overlap", title="train vs eval shift overlap")
        ax1.legend(fontsize=6)
        for run, g in self.shifts.groupby("run"):
            ax2.plot(g.layer, g.pair_rho, marker="o", ms=3, label=f"pair ρ, {run}")
        ax2.axhline(0, color="grey", lw=0.8)
        ax2.set(xlabel="layer (output of block l)", title="prompt sim vs shift sim")
        ax2.legend(fontsize=6)
        return fig
