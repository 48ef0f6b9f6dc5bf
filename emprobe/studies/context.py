"""What every study stage shares: the config, paths under ``OUT``, models loaded once, question subsets, and the
section format of ``summary.json``. Layer ``l`` = residual stream after decoder block ``l``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from emprobe.io import json_safe
from emprobe.studies.cells import Cell, cells, control_cell, reference_cell
from emprobe.studies.config import StudyConfig


def section(title: str, findings: list[str], numbers: dict[str, Any], control: str, uncertainty: str,
            plots: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A report section that no single analysis result renders (the same shape as ``Result.to_section``)."""
    return json_safe({"title": title, "findings": list(findings), "numbers": json_safe(numbers, digits=6),
                      "control": control, "uncertainty": uncertainty, "plots": plots or [], **extra})


class StudyContext:
    """Paths, cached models and question sets of one study run."""

    def __init__(self, cfg: StudyConfig, log: Callable[[str], Any] | None = print):
        self.cfg = cfg
        self.out = Path(cfg.out).resolve()
        self.log = log or (lambda _m: None)
        self._models: dict[str, Any] = {}

    # ---- paths ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.out))

    @property
    def runs_dir(self) -> Path:
        return self.path("runs")

    def run(self, cell: Cell | str):
        from emprobe.finetuning import Run

        return Run.load(self.runs_dir / (cell if isinstance(cell, str) else cell.name))

    # ---- cells ---------------------------------------------------------------------------------
    @property
    def cells(self) -> list[Cell]:
        return cells(self.cfg)

    @property
    def reference(self) -> Cell:
        """The misaligned run of the single-run stages (the control's twin on the first dataset)."""
        return reference_cell(self.cfg)

    @property
    def control(self) -> Cell:
        return control_cell(self.cfg, self.cfg.datasets[0].name)

    @property
    def last_step(self) -> int:
        return max(self.cfg.training.checkpoints())

    # ---- models (loaded once, shared by the stages) --------------------------------------------
    def lm(self, which: str = "base"):
        """``base``, or a run name (its final checkpoint, merged into the weights)."""
        if which not in self._models:
            from emprobe.models import load_model

            adapter = None if which == "base" else str(self.run(which).checkpoints()[-1].path)
            self._models[which] = load_model(self.cfg.model, adapter=adapter, merge=adapter is not None, log=None)
        return self._models[which]

    def prior_lms(self) -> dict[str, Any]:
        """The pre-fine-tuning models for claim 2: the config's ``prior_models`` by kind, else the study's model."""
        from emprobe.models import load_model

        if not self.cfg.prior_models:
            return {self.cfg.model: self.lm("base")}
        return {kind: load_model(m, log=None) for kind, m in self.cfg.prior_models}

    # ---- question sets (written by the setup stage) --------------------------------------------
    def qs(self, which: str = "eval"):
        from emprobe.data import load_questions_yaml

        where = {"eval": ("setup", "questions.yaml"), "persona": ("setup", "persona.yaml"),
                 "causal": ("margins", "causal.yaml"), "heldout": ("setup", "heldout.yaml")}[which]
        return load_questions_yaml(self.path(*where))

    def direction(self, method: str):
        from emprobe.probes import Direction

        return Direction.load(self.path("directions", method))

    def margins(self) -> pd.DataFrame:
        """Per-pair margins: ``run, step, question_id, category, pair, margin`` (step 0 = the base model)."""
        return pd.read_parquet(self.path("margins", "pairs.parquet"))

    def rises(self, dataset: str | None = None) -> pd.DataFrame:
        """Per question and pair: ``base``, ``misaligned_change``, ``control_change``, ``em_rise`` of one dataset's
        reference run (default: the first dataset), or ``"pooled"``: averaged over the datasets (the part of
        per-question EM that belongs to the question rather than to the training data)."""
        r = pd.read_parquet(self.path("margins", "rises.parquet"))
        if dataset == "pooled":
            cols = ["base", "misaligned_change", "control_change", "em_rise"]
            return r.groupby(["question_id", "pair", "category"], sort=False)[cols].mean().reset_index()
        return r[r.dataset == (dataset or self.cfg.datasets[0].name)].drop(columns="dataset")

    def losses(self) -> pd.DataFrame:
        return pd.read_parquet(self.path("finetune", "losses.parquet"))

