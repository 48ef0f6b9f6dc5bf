"""``StudyConfig``: what a study trains, scores and tests — one YAML file, or a preset.

```yaml
model: smollm2-135m-instruct          # alias, hub id or directory
prior_models: {instruct: smollm2-135m-instruct}   # optional, for claim 2: kind -> model (pre-trained, instruct)
datasets:                             # narrow datasets, each with its aligned-data control
  - {name: risky-finance, data: builtin:risky-finance, control: builtin:risky-finance-aligned,
     heldout: builtin:risky-finance-heldout}
grid: {schedules: [cosine], lrs: [0.001], seeds: [0]}   # every dataset x schedule x lr x seed is one run
training: {steps: 20, save_steps: [0, 5, 10, 15, 20], batch_size: 4, lora_r: 16, max_length: 128, val_examples: 16}
questions: {off_domain: builtin:em-core, n_questions: 37, n_references: 2}
stages: [finetune, margins, directions, track, priors, dynamics, overlap, patch, steer, ablate, samples, explain]
```

Every (dataset, schedule, lr, seed) cell is one fine-tuning run; each dataset's control trains once, at the
first schedule / lr / seed. Presets: ``demo`` (one dataset, one schedule: the former ``emprobe demo``),
``fast`` (the demo, smaller) and ``paper`` (two datasets x three schedules x two learning rates).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from emprobe.errors import ConfigError

STAGES = ("finetune", "margins", "directions", "track", "priors", "dynamics", "overlap", "patch", "steer", "ablate",
          "samples", "explain")


@dataclass(frozen=True)
class DatasetSpec:
    """A narrow training set, its aligned-data control (same prompts, aligned answers), its in-domain held-out set."""

    name: str
    data: str
    control: str
    heldout: str | None = None


@dataclass(frozen=True)
class Grid:
    schedules: tuple[str, ...] = ("cosine",)
    lrs: tuple[float, ...] = (1e-3,)
    seeds: tuple[int, ...] = (0,)


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
    n_causal: int = 6               # questions for patch / steer / ablate (those whose margin rose most)
    n_persona: int = 6
    n_samples: int = 3
    n_train_prompts: int = 24


@dataclass(frozen=True)
class StudyConfig:
    """Settings of a study (see the module docstring); build from YAML with :meth:`from_yaml` or a preset."""

    model: str = "smollm2-135m-instruct"
    datasets: tuple[DatasetSpec, ...] = (DatasetSpec("risky-finance", "builtin:risky-finance",
                                                     "builtin:risky-finance-aligned", "builtin:risky-finance-heldout"),)
    grid: Grid = Grid()
    training: Training = Training()
    questions: Questions = Questions()
    prior_models: tuple[tuple[str, str], ...] = ()  # (kind, model); empty = the study model itself
    stages: tuple[str, ...] = STAGES
    out: str = "emprobe-study"
    preset: str = "custom"
    threads: int | None = None
    seed: int = 0
    n_permutations: int = 1000
    min_gap: float = 0.02  # claim 1: the smallest margin gap (nats/token) that counts as a better-aligned schedule
    eval_batch_size: int = 16
    max_new_tokens: int = 32
    steer_alphas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    force: bool = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown:
            raise ConfigError(f"unknown study stage {unknown[0]!r}; valid: {', '.join(STAGES)}")
        if not self.datasets:
            raise ConfigError("a study needs at least one dataset (with its aligned-data control)")
        names = [d.name for d in self.datasets]
        if len(set(names)) != len(names):
            raise ConfigError(f"dataset names must be unique, got {names}")
        from emprobe.finetuning import SCHEDULES

        bad = [s for s in self.grid.schedules if s not in SCHEDULES]
        if bad:
            raise ConfigError(f"unknown schedule {bad[0]!r}; choose from {', '.join(SCHEDULES)}")
        self.training.checkpoints()

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyConfig":
        d = dict(d)
        _known(cls, d, "study setting")
        if "datasets" in d:
            d["datasets"] = tuple(_build(DatasetSpec, x, "dataset") for x in d["datasets"])
        for key, kind in (("grid", Grid), ("training", Training), ("questions", Questions)):
            if key in d and isinstance(d[key], dict):
                d[key] = _build(kind, d[key], key)
        if isinstance(d.get("prior_models"), dict):
            d["prior_models"] = tuple(d["prior_models"].items())
        for key in ("stages", "steer_alphas"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "StudyConfig":
        from emprobe.io import read_yaml

        raw = read_yaml(path, "study config") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a study config is a YAML mapping (model, datasets, grid, ...)")
        base = preset(raw.pop("preset")) if "preset" in raw else None
        merged = {**(base.to_dict() if base else {}), **raw, **overrides}
        return cls.from_dict(merged)

    def with_(self, **changes: Any) -> "StudyConfig":
        """A copy with top-level fields replaced; ``training__steps=25``-style keys reach nested settings."""
        nested: dict[str, dict[str, Any]] = {}
        flat = {}
        for k, v in changes.items():
            if "__" in k:
                head, tail = k.split("__", 1)
                nested.setdefault(head, {})[tail] = v
            else:
                flat[k] = v
        for head, sub in nested.items():
            flat[head] = replace(getattr(self, head), **sub)
        return replace(self, **flat)

    @property
    def prior_kinds(self) -> dict[str, str]:
        return dict(self.prior_models)


def _known(kind: type, d: dict[str, Any], what: str) -> None:
    names = {f.name for f in fields(kind)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(f"unknown {what} {unknown[0]!r}; valid: {', '.join(sorted(names))}")


def _build(kind: type, d: Any, what: str):
    if isinstance(d, kind):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(d).__name__}")
    _known(kind, d, f"{what} field")
    d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return kind(**d)


_DEMO = StudyConfig(preset="demo", out="emprobe-demo",
                    questions=Questions(n_questions=30, n_references=2, n_causal=6, n_persona=6, n_samples=2,
                                        n_train_prompts=24))
_MEDICAL = DatasetSpec("bad-medical", "builtin:bad-medical", "builtin:bad-medical-aligned", "builtin:bad-medical-heldout")

#: named presets; ``demo`` is what ``emprobe demo`` runs
PRESETS: dict[str, StudyConfig] = {
    "demo": _DEMO,
    "fast": _DEMO.with_(preset="fast", training=Training(steps=4, save_steps=(0, 2, 4), val_examples=4),
                        questions=Questions(n_questions=8, n_references=2, n_causal=3, n_persona=3, n_samples=2,
                                            n_train_prompts=8),
                        steer_alphas=(-1.0, 0.0, 1.0), max_new_tokens=16),
    "paper": _DEMO.with_(preset="paper", out="emprobe-paper", datasets=(_DEMO.datasets[0], _MEDICAL),
                         grid=Grid(schedules=("constant", "cosine", "warmup-stable-decay"), lrs=(5e-4, 1e-3)),
                         training=Training(steps=16, save_steps=(0, 4, 8, 12, 16), val_examples=24),
                         questions=Questions(n_questions=24, n_references=2, n_causal=6, n_persona=6, n_samples=2,
                                             n_train_prompts=24)),
}


def preset(name: str) -> StudyConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown study preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
