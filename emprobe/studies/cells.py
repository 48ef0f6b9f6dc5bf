"""The study's fine-tuning runs: one per (dataset, schedule, lr, seed, mitigation) cell, plus one aligned-data control
per dataset (trained at the grid's first schedule, lr and seed, without mitigation). Runs live under ``OUT/runs/<name>`` (outside any
stage directory), so a changed cell retrains that run only: a finished run with the same settings is reused."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emprobe.studies.config import StudyConfig
from emprobe.studies.mitigation_grid import NONE


@dataclass(frozen=True)
class Cell:
    """One run of the study."""

    name: str
    dataset: str
    data: str
    schedule: str
    lr: float
    seed: int
    control: bool
    mitigation: str = NONE  # a name of `grid.mitigations` (controls: none)

    def label(self) -> str:
        if self.control:
            return f"{self.dataset} control"
        return f"{self.dataset} {self.schedule} lr {self.lr:g}" + ("" if self.mitigation == NONE else
                                                                   f" [{self.mitigation}]")


def cells(cfg: StudyConfig) -> list[Cell]:
    """Every run of the study, misaligned cells first, then each dataset's control."""
    g = cfg.grid
    multi = len(g.schedules) * len(g.lrs) * len(g.seeds) > 1
    out = []
    for ds in cfg.datasets:
        for sched in g.schedules:
            for lr in g.lrs:
                for seed in g.seeds:
                    name = f"{ds.name}-{sched}-lr{lr:g}-s{seed}" if multi else f"{ds.name}-misaligned"
                    for m in g.mitigations:  # `none` keeps the name a study without the axis gives its run
                        out.append(Cell(name + ("" if m.name == NONE else f"-{m.name}"), ds.name, ds.data, sched, lr,
                                        seed, False, m.name))
    for ds in cfg.datasets:
        out.append(Cell(f"{ds.name}-control", ds.name, ds.control, g.schedules[0], g.lrs[0], g.seeds[0], True))
    return out


def finetune_config(cfg: StudyConfig, cell: Cell, runs_dir: Path):
    """The :class:`~emprobe.finetuning.FinetuneConfig` of ``cell``."""
    from emprobe.finetuning import FinetuneConfig

    t = cfg.training
    mitigation = {m.name: m for m in cfg.grid.mitigations}[cell.mitigation].resolved(runs_dir.parent / "directions")
    return FinetuneConfig(**mitigation, model=cfg.model, data=cell.data, out=str(runs_dir / cell.name),
                          max_steps=t.steps,
                          save_steps=t.checkpoints(), lr=cell.lr, schedule=cell.schedule,
                          warmup_steps=t.warmup_steps, decay_fraction=t.decay_fraction, batch_size=t.batch_size,
                          max_length=t.max_length, lora_r=t.lora_r, lora_alpha=2 * t.lora_r, seed=cell.seed,
                          val_max_examples=t.val_examples, val_ci=t.val_ci, progress=False, resume=True)


def main_cells(cfg: StudyConfig, dataset: str | None = None) -> list[Cell]:
    """The misaligned (non-control) runs, optionally of one dataset."""
    return [c for c in cells(cfg) if not c.control and (dataset is None or c.dataset == dataset)]


def control_cell(cfg: StudyConfig, dataset: str) -> Cell:
    return next(c for c in cells(cfg) if c.control and c.dataset == dataset)


def reference_cell(cfg: StudyConfig, dataset: str | None = None) -> Cell:
    """The misaligned run that the single-run stages (track, overlap, causal checks) use: the control's twin
    (same schedule, lr and seed) of the first dataset, so 'misaligned vs control' differs only in the data."""
    ds = dataset or cfg.datasets[0].name
    ctl = control_cell(cfg, ds)
    return next(c for c in main_cells(cfg, ds) if (c.schedule, c.lr, c.seed, c.mitigation) == (
        ctl.schedule, ctl.lr, ctl.seed, NONE))
