"""What every study stage shares: the config, paths under ``OUT``, models loaded once, question subsets, and where
the fine-tuning runs train. Layer ``l`` = residual stream after decoder block ``l``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import pandas as pd

from emprobe.studies.cells import Cell, cells, control_cell, reference_cell
from emprobe.studies.config import StudyConfig

if TYPE_CHECKING:
    from emprobe.data import QuestionSet
    from emprobe.finetuning import Run
    from emprobe.models import LoadedModel
    from emprobe.probes import Direction

#: the question subsets a study writes: name -> (stage directory, file)
QUESTION_SETS = {"eval": ("setup", "questions.yaml"), "persona": ("setup", "persona.yaml"),
                 "causal": ("margins", "causal.yaml"), "heldout": ("setup", "heldout.yaml")}


class StudyContext:
    """Paths, cached models and question sets of one study run; ``executor`` (``local`` | ``ray``) and
    ``executor_options`` say where the fine-tuning stage trains its runs."""

    def __init__(self, cfg: StudyConfig, log: Callable[[str], Any] | None = print, executor: str = "local",
                 executor_options: dict[str, Any] | None = None) -> None:
        self.cfg: StudyConfig = cfg
        self.out: Path = Path(cfg.out).resolve()
        self.log: Callable[[str], Any] = log or (lambda _m: None)
        self.executor: str = executor
        self.executor_options: dict[str, Any] = dict(executor_options or {})
        self._models: dict[str, LoadedModel] = {}

    # ---- paths ---------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def rel(self, path: Path) -> str:
        return str(Path(path).resolve().relative_to(self.out))

    @property
    def runs_dir(self) -> Path:
        return self.path("runs")

    def run(self, cell: Cell | str) -> Run:
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
    def model(self, which: str = "base") -> LoadedModel:
        """``base``, or a run name (its final checkpoint, merged into the weights)."""
        if which not in self._models:
            from emprobe.models import load_model

            adapter = None if which == "base" else str(self.run(which).checkpoints()[-1].path)
            self._models[which] = load_model(self.cfg.model, adapter=adapter, merge=adapter is not None, log=None)
        return self._models[which]

    def prior_models(self) -> dict[str, LoadedModel]:
        """The pre-fine-tuning models for claim 2: the config's ``prior_models`` by kind, else the study's model."""
        from emprobe.models import load_model

        if not self.cfg.prior_models:
            return {self.cfg.model: self.model("base")}
        return {kind: load_model(m, log=None) for kind, m in self.cfg.prior_models}

    # ---- what earlier stages wrote -------------------------------------------------------------
    def question_set(self, which: str = "eval") -> QuestionSet:
        """A question subset written by an earlier stage: ``eval`` | ``persona`` | ``heldout`` (setup) or
        ``causal`` (margins)."""
        from emprobe.data import load_questions_yaml

        return load_questions_yaml(self.path(*QUESTION_SETS[which]))

    def direction(self, method: str) -> Direction:
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
