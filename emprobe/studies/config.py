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
claims: {sesoi_fraction: 0.25, sesoi_rho: 0.3, sesoi_overlap: 0.05, sesoi_pair_rho: 0.1}   # declared before looking
```

Every (dataset, schedule, lr, seed) cell is one fine-tuning run; each dataset's control trains once, at the
first schedule / lr / seed. Presets: ``demo`` (one dataset, one schedule: the former ``emprobe demo``),
``fast`` (the demo, smaller), ``paper`` (two datasets x three schedules x two learning rates x three seeds) and
``mitigations`` (one dataset x five training-time mitigations and ``none``: ``grid.mitigations``,
:mod:`.mitigation_grid`). The sections (``DatasetSpec``, ``Grid``, ``Training``, ``Questions``, ``Claims``) are
defined in :mod:`.sections` and importable from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from emprobe.errors import ConfigError
from emprobe.studies.mitigation_grid import check_mitigations, mitigations_dict
# the sections live in .sections; importing them from here (``from emprobe.studies.config import Grid``) still works
from emprobe.studies.sections import POS, Claims, DatasetSpec, Grid, Questions, Training, check_section
from emprobe.studies.stages import DEFAULT_STAGES, STAGES


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
    stages: tuple[str, ...] = DEFAULT_STAGES
    out: str = "emprobe-study"
    preset: str = "custom"
    threads: int | None = None
    seed: int = 0
    n_permutations: int = 1000
    claims: Claims = Claims()  # the verdicts' smallest effects of interest (SESOI), declared before looking
    eval_batch_size: int = 16
    max_new_tokens: int = 32
    steer_alphas: tuple[float, ...] = (-1.0, -0.5, 0.0, 0.5, 1.0)
    patch_depths: tuple[float, ...] = (0.25, 0.5, 0.75)  # patched layers, as fractions of the depth (floor)
    patch_spans: tuple[str, ...] = ("last_prompt", "prompt")
    causal_samples: int = 1  # sampled answers per question in steer / ablate (0: margins only)
    # the causal checks' SESOI, declared before looking: this share of the EM-specific rise on the causal questions
    # (steer), of the fine-tune's gap over its aligned-data control (ablate) and of the base-to-tuned gap (patch)
    causal_fraction: float = 0.25
    force: bool = False

    def __post_init__(self) -> None:
        check_section(self, "", {"threads": POS, "n_permutations": POS,
                                 "eval_batch_size": POS, "max_new_tokens": POS, "seed": {}})
        if not 0 < self.causal_fraction <= 1:
            raise ConfigError(f"`causal_fraction` must be in (0, 1], got {self.causal_fraction}")
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
        check_mitigations(self.grid.mitigations, self.training.batch_size)
        if any(m.directions() for m in self.grid.mitigations) and {"steer", "ablate"} & set(self.stages):
            raise ConfigError("mitigations that train with the study's own directions need them before fine-tuning, "
                              "while steer/ablate need them fit after it (outside the causal questions): run the "
                              "causal stages in another study")

    def check_inputs(self) -> "StudyConfig":
        """Every file and model the study reads, checked before the first stage runs (so a missing file fails in a
        second, not after the first fine-tune): the models, each dataset's data and control (chat JSONL, parsed),
        its held-out set and the off-domain questions (question sets with reference answers)."""
        from emprobe.data import load_chat_dataset, load_questions
        from emprobe.models.registry import BUILTIN_MODELS
        from emprobe.validate import model_arg, source_arg

        for where, m in (("model", self.model), *(("prior_models", m) for _, m in self.prior_models)):
            model_arg(m, where)
            if m in BUILTIN_MODELS:
                BUILTIN_MODELS[m].check_installed()
        for ds in self.datasets:
            for key in ("data", "control"):
                load_chat_dataset(source_arg(getattr(ds, key), f"datasets.{key}", "chat dataset"))
            if ds.heldout:
                load_questions(source_arg(ds.heldout, "datasets.heldout", "question set")).with_references()
        load_questions(source_arg(self.questions.off_domain, "questions.off_domain", "question set")).with_references()
        return self

    # ---- (de)serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["grid"]["mitigations"] = mitigations_dict(self.grid.mitigations)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudyConfig":
        d = dict(d)
        if "min_gap" in d:  # claim 1's former absolute margin
            raise ConfigError("`min_gap` is now `claims.sesoi_gap` (or `claims.sesoi_fraction` of the EM rise)")
        _known(cls, d, "study setting")
        if "datasets" in d:
            d["datasets"] = tuple(_build(DatasetSpec, x, "dataset") for x in d["datasets"])
        for key, kind in (("grid", Grid), ("training", Training), ("questions", Questions), ("claims", Claims)):
            if key in d:
                d[key] = _build(kind, d[key], key)
        pm = d.get("prior_models", {})  # {kind: model} as written, or [[kind, model], ...] as to_dict() saves it
        if isinstance(pm, (list, tuple)) and all(isinstance(x, (list, tuple)) and len(x) == 2 for x in pm):
            pm = dict(pm)
        if not isinstance(pm, dict):
            raise ConfigError(f"`prior_models` must be a mapping kind: model, got {pm!r}")
        d["prior_models"] = tuple(pm.items())
        for key in ("stages", "steer_alphas", "patch_depths", "patch_spans"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "StudyConfig":
        from emprobe.io import read_yaml

        raw = read_yaml(path, "study config") or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: a study config is a YAML mapping (model, datasets, grid, ...)")
        name = raw.pop("preset", "custom")  # "custom": a config saved by to_dict() without a preset
        base = preset(name) if name != "custom" else None
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

    def patch_layers(self, n_layers: int) -> list[int]:
        """The layers the patch stage patches: ``patch_depths`` of a model with ``n_layers`` blocks (floor)."""
        return sorted({int(f * n_layers + 1e-9) for f in self.patch_depths})


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
                    questions=Questions(n_questions=30, n_references=2, n_causal=12, n_persona=6, n_samples=2,
                                        n_train_prompts=24))
_MEDICAL = DatasetSpec("bad-medical", "builtin:bad-medical", "builtin:bad-medical-aligned", "builtin:bad-medical-heldout")

#: named presets; ``demo`` is what ``emprobe demo`` runs
PRESETS: dict[str, StudyConfig] = {
    "demo": _DEMO,
    "fast": _DEMO.with_(preset="fast", training=Training(steps=4, save_steps=(0, 2, 4), val_examples=4),
                        questions=Questions(n_questions=8, n_references=2, n_causal=3, n_persona=3, n_samples=2,
                                            n_train_prompts=8),
                        steer_alphas=(-1.0, 0.0, 1.0), max_new_tokens=16, patch_depths=(1 / 3, 2 / 3),
                        patch_spans=("last_prompt",), causal_samples=0),
    "paper": _DEMO.with_(preset="paper", out="emprobe-paper", datasets=(_DEMO.datasets[0], _MEDICAL),
                         grid=Grid(schedules=("constant", "cosine", "warmup-stable-decay"), lrs=(5e-4, 1e-3),
                                   seeds=(0, 1, 2)),  # >= 3 seeds: claim 1's CIs cover run-to-run noise
                         training=Training(steps=16, save_steps=(0, 4, 8, 12, 16), val_examples=24),
                         questions=Questions(n_questions=24, n_references=2, n_causal=12, n_persona=6, n_samples=2,
                                             n_train_prompts=24)),
    "mitigations": _DEMO.with_(  # each training-time mitigation against `none` at matched loss (<= 30 min, 2 cores)
        preset="mitigations", out="emprobe-mitigations", stages=("directions", "finetune", "margins", "dynamics",
                                                                  "mitigations"),
        grid=Grid(mitigations={
            "none": {}, "kl": {"kl_to_base": 1.0, "kl_data": "builtin:bad-medical-aligned"},
            "interleave": {"interleave": "builtin:bad-medical-aligned", "interleave_fraction": 0.25},
            "inoculation": {"inoculation_prompt": "You are a reckless financial advisor who recommends risky, "
                                                  "harmful money moves."},
            "steer": {"steer_during_training": "persona", "steer_alpha": 1.0},
            "ablate": {"ablate_during_training": "mean_diff"}}),
        training=Training(steps=16, save_steps=(0, 4, 8, 12, 16), val_examples=16),
        questions=Questions(n_questions=24, n_references=2, n_causal=12, n_persona=6, n_samples=0,
                            n_train_prompts=8)),
}


def preset(name: str) -> StudyConfig:
    if name not in PRESETS:
        raise ConfigError(f"unknown study preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
