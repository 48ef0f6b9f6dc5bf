"""The study's stages: the one registry. Each stage is a module here whose builder turns a
:class:`~emprobe.studies.context.StudyContext` into a :class:`~emprobe.studies.pipeline.Stage` (what it runs, its
cache key, what it depends on); this table says which module builds which stage, in run order, which claim's
verdict a stage carries and which stages count as training time.

Stages call the stage packages (``emprobe.finetuning``, ``emprobe.evaluation``, ``emprobe.probes``,
``emprobe.analysis.<verb>``), never ``emprobe`` itself, and return the report section of a typed
:class:`~emprobe.result.Result` (``Result.to_section``).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    """One registered stage: ``module:builder`` under :mod:`emprobe.studies.stages`, the claim its verdict tests
    (``None``: no verdict) and whether its seconds count as training (the rest counts as analysis)."""

    name: str
    module: str
    builder: str = "stage"
    claim: str | None = None
    training: bool = False

    def build(self, ctx: Any) -> Any:
        """The :class:`~emprobe.studies.pipeline.Stage` of a :class:`~emprobe.studies.context.StudyContext` (this
        module imports neither: the config reads :data:`STAGES` from here, and the context reads the config)."""
        return getattr(importlib.import_module(f"emprobe.studies.stages.{self.module}"), self.builder)(ctx)


#: every stage in run order (``setup`` always runs; the others when named in ``StudyConfig.stages``)
REGISTRY: tuple[StageSpec, ...] = (
    StageSpec("setup", "setup", training=True),
    StageSpec("directions", "directions"),  # before finetune: a mitigation may steer / ablate with its directions
    StageSpec("finetune", "finetune", training=True),
    StageSpec("margins", "margins"),
    StageSpec("track", "track"),
    StageSpec("priors", "priors", claim="Claim 2"),
    StageSpec("dynamics", "dynamics", claim="Claim 1"),
    StageSpec("overlap", "overlap", claim="Claim 3"),
    StageSpec("diff", "diff"),
    StageSpec("patch", "causal", "patch_stage"),
    StageSpec("steer", "causal", "steer_stage"),
    StageSpec("ablate", "causal", "ablate_stage"),
    StageSpec("samples", "samples"),
    StageSpec("explain", "explain"),
    StageSpec("mitigations", "mitigations"),  # training-time mitigations + claim 1's positive control
)
SPECS = {s.name: s for s in REGISTRY}

#: the stages a config may list (``setup`` is implied)
STAGES = tuple(s.name for s in REGISTRY if s.name != "setup")
#: the stages a study runs unless its config lists others (``mitigations`` needs a ``grid.mitigations`` axis)
DEFAULT_STAGES = tuple(s for s in STAGES if s != "mitigations")

__all__ = ["DEFAULT_STAGES", "REGISTRY", "SPECS", "STAGES", "StageSpec"]
