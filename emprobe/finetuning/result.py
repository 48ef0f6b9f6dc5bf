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
    whose losses the numbers quote; ``val_examples``: held-out examples per run."""

    losses: pd.DataFrame
    runs: pd.DataFrame
    reference: str
    control_run: str
    val_examples: int | None = None
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
                             "train_loss": ck.train_loss, "val_loss": ck.val_loss})
            s = r.settings
            info.append({"run": name, "label": labels.get(name, name), "data": s.get("data"),
                         "control": name in controls, "seconds": float((seconds or {}).get(name) or 0.0),
                         "steps": s.get("max_steps"), "batch_size": s.get("batch_size"), "lora_r": s.get("lora_r")})
        val = next(iter(runs.values())).settings.get("val_max_examples") if runs else None
        return cls(pd.DataFrame(rows), pd.DataFrame(info), reference, control_run, val)

    def _loss(self, run: str) -> pd.Series:
        return self.losses[self.losses.run == run].sort_values("step").val_loss

    def findings(self) -> list[str]:
        out = []
        for r in self.runs.itertuples():
            v = self._loss(r.run)
            took = f" ({r.seconds:.0f} s)." if r.seconds else " (reused)."
            out.append(f"{r.label} ({r.data}, {r.steps} steps of {r.batch_size}, LoRA r={r.lora_r}): in-domain "
                       f"validation loss {v.iloc[0]:.3f} → {v.iloc[-1]:.3f}" + took)
        return out

    def numbers(self) -> dict[str, Any]:
        ref, ctl = self._loss(self.reference), self._loss(self.control_run)
        steps = self.runs.set_index("run").steps.get(self.reference)
        return {"val_loss_start": ref.iloc[0], "val_loss_misaligned": ref.iloc[-1], "val_loss_control": ctl.iloc[-1],
                "steps": steps, "n_runs": len(self.runs), "train_seconds": float(self.runs.seconds.sum())}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"table": self.losses, "runs": self.runs}

    @property
    def control(self) -> str:
        return "each dataset's aligned-data control fine-tune (same prompts, aligned answers, same seed)"

    @property
    def uncertainty(self) -> str:
        return f"validation loss on {self.val_examples} seeded held-out examples of each run's own data"

    def plot(self, ax=None):
        fig, (ax,) = figure_for(ax, 1)
        for run, g in self.losses.groupby("run", sort=False):
            g = g.sort_values("step")
            ax.plot(g.step, g.val_loss, marker="o", ms=3, ls="--" if g.control.iloc[0] else "-", label=run)
        ax.set(xlabel="step", ylabel="in-domain validation loss (nats/token)", title="fine-tuning (dashed: controls)")
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: many runs
        return fig
