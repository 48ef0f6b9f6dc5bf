"""``TrainingResult``: the in-domain validation loss of a set of fine-tuning runs along their checkpoints — each
misaligned run beside its aligned-data control — as a typed :class:`~emprobe.result.Result`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from emprobe.result import Result, figure_for


@dataclass(frozen=True, eq=False)
class TrainingResult(Result):
    """``losses``: one row per (run, checkpoint) with at least ``run, control, step, train_loss, val_loss``;
    ``runs``: one row per run with ``run, label, data, control, seconds`` (0 = reused, not trained now) and the
    run's ``steps, batch_size, lora_r``; ``reference`` / ``control_run``: the misaligned run and its control
    whose losses the numbers quote; ``val_examples``: held-out examples per run; ``val_ci``: the target 95% CI
    half-width (nats/token) that chose how many of them each checkpoint after step 0 is validated on (``None``: all);
    ``losses`` then also holds each checkpoint's ``val_examples`` and the 95% CIs of its loss and of its change from
    step 0 (``val_loss_ci_*``, ``val_loss_change_ci_*``; paired bootstrap over the examples)."""

    losses: pd.DataFrame
    runs: pd.DataFrame
    reference: str
    control_run: str
    val_examples: int | None = None
    val_ci: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "finetune"
    title: ClassVar[str] = "Fine-tuning"

    @classmethod
    def from_runs(cls, runs: dict[str, Any], *, labels: dict[str, str], controls: set[str], reference: str,
                  control_run: str, seconds: dict[str, float] | None = None,
                  extra: dict[str, dict[str, Any]] | None = None) -> "TrainingResult":
        """From loaded :class:`~emprobe.finetuning.Run` objects by name; ``extra[name]`` adds columns to the run's
        loss rows (e.g. its dataset, schedule, lr, seed)."""
        rows, info = [], []
        for name, r in runs.items():
            for ck in r.checkpoints():
                rows.append({"run": name, **(extra or {}).get(name, {}), "control": name in controls, "step": ck.step,
                             "train_loss": ck.train_loss, "val_loss": ck.val_loss, **_val_ci(ck.info)})
            s = r.settings
            info.append({"run": name, "label": labels.get(name, name), "data": s.get("data"),
                         "control": name in controls, "seconds": float((seconds or {}).get(name) or 0.0),
                         "steps": s.get("max_steps"), "batch_size": s.get("batch_size"), "lora_r": s.get("lora_r")})
        first = next(iter(runs.values())).settings if runs else {}
        return cls(pd.DataFrame(rows), pd.DataFrame(info), reference, control_run, first.get("val_max_examples"),
                   first.get("val_ci"))

    def _loss(self, run: str) -> pd.Series:
        return self.losses[self.losses.run == run].sort_values("step").val_loss

    def findings(self) -> list[str]:
        out = []
        for r in self.runs.itertuples():
            v = self._loss(r.run)
            took = f" ({r.seconds:.0f} s)." if r.seconds else " (reused)."
            last = self.losses[self.losses.run == r.run].sort_values("step").iloc[-1]
            ci = (f" (change 95% CI [{last.val_loss_change_ci_low:+.3f}, {last.val_loss_change_ci_high:+.3f}] on "
                  f"{int(last.val_examples)} held-out examples)") if pd.notna(last.get("val_loss_change_ci_low")) \
                and pd.notna(last.get("val_examples")) else ""
            out.append(f"{r.label} ({r.data}, {r.steps} steps of {r.batch_size}, LoRA r={r.lora_r}): in-domain "
                       f"validation loss {v.iloc[0]:.3f} → {v.iloc[-1]:.3f}{ci}" + took)
        return out

    def numbers(self) -> dict[str, Any]:
        ref, ctl = self._loss(self.reference), self._loss(self.control_run)
        steps = self.runs.set_index("run").steps.get(self.reference)
        return {"val_loss_start": ref.iloc[0], "val_loss_misaligned": ref.iloc[-1], "val_loss_control": ctl.iloc[-1],
                "steps": steps, "n_runs": len(self.runs), "train_seconds": float(self.runs.seconds.sum()),
                "val_ci": self.val_ci, **self._last_ci()}

    def _last_ci(self) -> dict[str, Any]:
        """The reference run's last checkpoint: examples validated on, 95% CIs of its loss and of its change."""
        g = self.losses[self.losses.run == self.reference].sort_values("step")
        cols = ("val_examples", "val_loss_ci_low", "val_loss_ci_high", "val_loss_change_ci_low",
                "val_loss_change_ci_high")
        return {c: g[c].iloc[-1] for c in cols if c in g and not g.empty}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.losses, "runs": self.runs}

    @property
    def control(self) -> str:
        return "each dataset's aligned-data control fine-tune (same prompts, aligned answers, same seed)"

    @property
    def uncertainty(self) -> str:
        if self.val_ci is None:
            return f"validation loss on {self.val_examples} seeded held-out examples of each run's own data"
        ci = self._last_ci()
        used = f"; the misaligned run's last checkpoint: {ci['val_examples']} of them, loss 95% CI " \
               f"[{ci['val_loss_ci_low']:.3f}, {ci['val_loss_ci_high']:.3f}]" if "val_loss_ci_high" in ci else ""
        return (f"validation loss on seeded held-out examples of each run's own data (the first of "
                f"{self.val_examples} whose 95% CI half-width is at most {self.val_ci} nats/token{used}: see each "
                "checkpoint's val_loss_ci and val_loss_change_ci)")

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        for run, g in self.losses.groupby("run", sort=False):
            g = g.sort_values("step")
            ax.plot(g.step, g.val_loss, marker="o", ms=3, ls="--" if g.control.iloc[0] else "-", label=run)
        ax.set(xlabel="step", ylabel="in-domain validation loss (nats/token)", title="fine-tuning (dashed: controls)")
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: many runs
        return fig


def _val_ci(info: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint's validation size and the 95% CIs of its loss and of its change from step 0 (NaN if absent)."""
    lo, hi = info.get("val_loss_ci") or (float("nan"),) * 2
    clo, chi = info.get("val_loss_change_ci") or (float("nan"),) * 2
    return {"val_examples": info.get("val_examples"), "val_loss_ci_low": lo, "val_loss_ci_high": hi,
            "val_loss_change_ci_low": clo, "val_loss_change_ci_high": chi}
