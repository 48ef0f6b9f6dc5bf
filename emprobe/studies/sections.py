"""The sections of a study config (:class:`~emprobe.studies.config.StudyConfig`): ``datasets``, ``grid``,
``training``, ``questions`` and ``claims``, each a frozen dataclass that checks its own values when built (one-line
errors naming the setting, e.g. ``training.steps``)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from emprobe.errors import ConfigError
from emprobe.studies.mitigation_grid import NONE, MitigationSpec, parse_mitigations


def check_section(obj: Any, where: str, ranges: dict[str, dict[str, Any]]) -> None:
    """Types of every field (``training.steps: twenty``), then ranges (``grid.lrs: [-1]``): one-line errors
    naming the setting, raised when the config is built, before any stage runs."""
    from emprobe.validate import field_types, number

    field_types(obj, lambda f: f"`{where}{f}`")
    for name, kw in ranges.items():
        value = getattr(obj, name)
        for x in value if isinstance(value, tuple) else (value,):
            number(x, f"{where}{name}", **{"none": True, **kw})  # None: the annotation allows it (checked above)
    lists = [f.name for f in fields(obj) if isinstance(getattr(obj, f.name), tuple) and not getattr(obj, f.name)]
    if lists and where in ("grid.",):
        raise ConfigError(f"`{where}{lists[0]}` is empty; give at least one value")


POS, NONNEG = {"low": 1}, {"low": 0}


@dataclass(frozen=True)
class DatasetSpec:
    """A narrow training set, its aligned-data control (same prompts, aligned answers), its in-domain held-out set."""

    name: str
    data: str
    control: str
    heldout: str | None = None

    def __post_init__(self) -> None:
        check_section(self, "datasets.", {})


@dataclass(frozen=True)
class Grid:
    schedules: tuple[str, ...] = ("cosine",)
    lrs: tuple[float, ...] = (1e-3,)
    seeds: tuple[int, ...] = (0,)
    # named training-time mitigation sets, `none` included (emprobe.studies.mitigation_grid)
    mitigations: tuple[MitigationSpec, ...] = (MitigationSpec(NONE),)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mitigations", parse_mitigations(self.mitigations))
        check_section(self, "grid.", {"lrs": {"low": 0, "low_open": True}})
        for f in (f for f in ("schedules", "lrs", "seeds") if len(set(getattr(self, f))) < len(getattr(self, f))):
            raise ConfigError(f"`grid.{f}` repeats a value: {list(getattr(self, f))}")  # two runs, one directory


@dataclass(frozen=True)
class Training:
    steps: int = 20
    save_steps: tuple[int, ...] | None = None  # default: 0 and four more, evenly spaced
    batch_size: int = 4
    lora_r: int = 16
    max_length: int = 128
    val_examples: int = 16          # held-out examples validated at step 0 (the pool)
    val_ci: float | None = 0.3      # later checkpoints: the fewest of them whose loss CI half-width is <= this
    warmup_steps: int = 0
    decay_fraction: float = 0.5  # warmup-stable-decay: decay over the last half, so it differs from constant

    def __post_init__(self) -> None:
        check_section(self, "training.", {"steps": {"low": 2}, "save_steps": NONNEG, "batch_size": POS,
                                          "lora_r": POS, "max_length": POS, "val_examples": POS,
                                          "warmup_steps": NONNEG, "decay_fraction": {"low": 0, "high": 1}})

    def checkpoints(self) -> list[int]:
        if self.save_steps is not None:
            steps = sorted(set(self.save_steps))
        else:
            every = max(1, self.steps // (4 if self.steps >= 20 else 2))
            steps = sorted({0, *range(0, self.steps + 1, every), self.steps})
        if self.steps < 2 or max(steps) > self.steps or 0 not in steps or len(steps) < 3:
            raise ConfigError(f"a study needs >= 2 steps and >= 3 checkpoints including 0 (got steps {self.steps}, "
                              f"checkpoints {steps})")
        return steps


@dataclass(frozen=True)
class Questions:
    off_domain: str = "builtin:em-core"
    n_questions: int | None = None  # None = all
    n_references: int = 2           # reference pairs scored per question (>= 2 gives a reliability figure)
    n_causal: int = 12              # questions for patch / steer / ablate (those whose margin rose most)
    n_persona: int = 6
    n_samples: int = 3
    n_train_prompts: int = 24

    def __post_init__(self) -> None:
        check_section(self, "questions.", {"n_questions": POS, "n_references": POS, "n_causal": POS,
                                           "n_persona": POS, "n_samples": NONNEG, "n_train_prompts": POS})

    def causal_count(self, n_available: int) -> int:
        """How many of ``n_available`` questions the causal checks score: ``n_causal``, at most half of them (the
        mean-diff direction they steer and ablate with is fit on the rest: cross-fit)."""
        return max(0, min(self.n_causal, n_available // 2))


@dataclass(frozen=True)
class Claims:
    """Each claim's smallest effect of interest (SESOI), declared before looking (the one rule of
    :mod:`emprobe.analysis.stats.verdict`). Claim 1: a schedule gap at matched in-domain loss matters from
    ``sesoi_fraction`` of the dataset's established EM-specific rise, or from ``sesoi_gap`` nats/token when given;
    claim 2: the true ρ beyond the base margin and the topic, ``sesoi_rho``; claim 3: the misaligned − control
    mean-removed overlap ``sesoi_overlap`` and pair-similarity ρ ``sesoi_pair_rho``."""

    sesoi_fraction: float = 0.25
    sesoi_gap: float | None = None
    sesoi_rho: float = 0.3
    sesoi_overlap: float = 0.05
    sesoi_pair_rho: float = 0.1

    def __post_init__(self) -> None:
        unit = {"low": 0, "low_open": True, "high": 1}
        check_section(self, "claims.", {"sesoi_fraction": unit, "sesoi_gap": {"low": 0, "low_open": True},
                                        "sesoi_rho": {**unit, "high_open": True}, "sesoi_overlap": unit,
                                        "sesoi_pair_rho": unit})
