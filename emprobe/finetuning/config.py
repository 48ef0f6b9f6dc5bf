"""``FinetuneConfig``: every setting of a fine-tuning run, as one peft-style config dataclass."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from emprobe.errors import ConfigError
from emprobe.finetuning.steps import checkpoint_steps
from emprobe.models.registry import DEFAULT_MODEL

#: Fields that only say *how* to run, not *what* is trained: they may differ on ``resume`` and do not
#: enter a run's identity (:meth:`FinetuneConfig.run_settings`).
OPERATIONAL = ("out", "resume", "overwrite", "progress", "threads", "keep_state")


def _int_list(value: Any, what: str) -> list[int] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return [int(v) for v in value.replace(" ", "").split(",") if v]
        except ValueError:
            raise ConfigError(f"`{what}` must be comma-separated integers, got {value!r}") from None
    if isinstance(value, int):
        return [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        raise ConfigError(f"`{what}` must be a list of integers, got {value!r}") from None


@dataclass
class FinetuneConfig:
    """Settings of one narrow fine-tune (LoRA by default, ``full=True`` for all weights).

    Model and data: ``model`` is a :class:`~emprobe.models.ModelSpec` name (built-in alias, hub id or
    directory); ``data`` a chat JSONL(.gz) path or ``builtin:NAME``. The loss covers the last assistant
    turn of each conversation only (prompt tokens carry label -100); ``max_length`` truncates the response,
    never the prompt.

    LoRA: ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``targets`` (``"all-linear"`` or module names such as
    ``"q_proj,v_proj"``), ``layers`` restricts the adapter to some decoder blocks (``"all"``, ``"0:10"``,
    ``"0,5,-1"``; layer ``l`` = decoder block ``l``), ``rslora`` uses rank-stabilised scaling.

    Optimisation: ``lr``, ``schedule`` (see :data:`emprobe.finetuning.schedules.SCHEDULES`), ``warmup_steps``,
    ``num_cycles`` (cosine-with-restarts), ``decay_fraction`` / ``min_lr_ratio`` (warmup-stable-decay),
    ``max_steps`` (overrides ``epochs``), ``batch_size`` per process, ``grad_accum``.

    Checkpoints: the union of ``save_steps`` (explicit), ``save_every`` (every N steps) and
    ``save_log_spaced`` (K log-spaced steps incl. 0); step 0 (the untouched model) and the final step are
    always saved. With none of the three given, 6 log-spaced checkpoints are saved. Each checkpoint records
    the mean training loss so far and the loss on a held-out split of the data (``val_fraction`` of it,
    at most ``val_max_examples``, chosen with ``val_seed`` so that runs with different ``seed`` share it), with a
    95 % CI over the examples. ``val_ci`` (nats/token) keeps only as many of those examples as the CI needs: the
    fewest whose expected CI half-width, from the spread of the base model's per-example losses at step 0, is at
    most ``val_ci`` (at least 8; see :func:`emprobe.finetuning.validation.split_size`).

    Run directory: ``out`` must be new or empty unless ``resume`` (continue from the last complete
    checkpoint; a complete run is left as is) or ``overwrite`` (delete it first).

    Mitigations of emergent misalignment (each off by default; see :mod:`emprobe.finetuning.mitigations`):
    ``kl_to_base`` (β) adds β·KL(base ‖ tuned) over the next-token distributions at the response positions of
    the off-domain chat set ``kl_data`` (``kl_batch_size`` conversations per micro-batch; LoRA only: the base side
    is the same model with its adapter disabled); ``interleave`` (a chat dataset) supplies
    ``interleave_fraction`` of every batch; ``inoculation_prompt`` is a system prompt added to the training
    conversations only (never to validation); ``steer_during_training`` (a Direction directory) adds
    ``steer_alpha`` × its raw vector at ``direction_layer`` (default: its best layer) in training forwards only;
    ``ablate_during_training`` (a Direction directory) projects its unit vector out there in training forwards only.
    """

    model: str = DEFAULT_MODEL
    data: str = ""
    out: str = ""
    # adapter
    full: bool = False
    lora_r: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    targets: str = "all-linear"
    layers: str | None = None
    rslora: bool = False
    # optimisation
    lr: float = 3e-4
    schedule: str = "linear"
    warmup_steps: int = 0
    num_cycles: int = 2
    decay_fraction: float = 0.2
    min_lr_ratio: float = 0.0
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 8
    grad_accum: int = 1
    max_length: int = 512
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    optim: str = "adamw_torch"
    seed: int = 0
    # checkpoints
    save_steps: list[int] | None = None
    save_every: int | None = None
    save_log_spaced: int | None = None
    val_fraction: float = 0.1
    val_max_examples: int | None = 32
    val_seed: int = 0
    val_ci: float | None = None
    # model loading
    dtype: str = "float32"
    device: str = "auto"
    chat_template: str | None = None
    # mitigations (emprobe.finetuning.mitigations); each off by default
    kl_to_base: float = 0.0
    kl_data: str | None = None
    kl_batch_size: int | None = None
    interleave: str | None = None
    interleave_fraction: float = 0.25
    inoculation_prompt: str | None = None
    steer_during_training: str | None = None
    steer_alpha: float = 1.0
    ablate_during_training: str | None = None
    direction_layer: int | None = None
    # operational
    threads: int | None = None
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    keep_state: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.save_steps = _int_list(self.save_steps, "save_steps")
        for name in ("steer_during_training", "ablate_during_training"):  # a loaded Direction: its directory
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                setattr(self, name, str(getattr(value, "path", None) or value))
        if isinstance(self.targets, (list, tuple)):
            self.targets = ",".join(self.targets)
        if self.layers is not None and not isinstance(self.layers, str):
            self.layers = ",".join(str(x) for x in (self.layers if isinstance(self.layers, (list, tuple))
                                                    else [self.layers]))

    # ----------------------------------------------------------------- (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FinetuneConfig":
        """Build from a mapping; an unknown key raises :class:`ConfigError` naming it and the valid keys."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown fine-tuning setting {unknown[0]!r}; valid: {', '.join(sorted(names))}")
        return cls(**dict(d))

    @classmethod
    def build(cls, model: Any = None, data: Any = None, **options: Any) -> "FinetuneConfig":
        """A config from the verb's arguments: ``model`` a config (returned with ``options`` applied), an alias,
        hub id, directory or :class:`~emprobe.models.LoadedModel` (used by name: training works on its own copy);
        ``data`` ``builtin:NAME``, a chat JSONL or a loaded chat dataset; ``options`` are fields."""
        if isinstance(model, FinetuneConfig):
            if data is not None:
                options["data"] = data
            model, options = None, {**model.to_dict(), **options}
        from emprobe.models import BUILTIN_MODELS, LoadedModel
        from emprobe.validate import check_args, path_arg

        check_args(model=model, **({"data": data} if data is not None else {}))
        if "out" in options:
            path_arg(options["out"], "out", "run directory")
        if isinstance(model, LoadedModel):
            if model.spec.adapter:
                raise ConfigError("`model` must be a base model, not a model with an adapter attached")
            model = model.spec.name if model.spec.name in BUILTIN_MODELS else str(model.path)
        if model is not None:
            options["model"] = model
        if data is not None:
            options["data"] = data if isinstance(data, str) else str(getattr(data, "source", data))
        if "out" in options:
            options["out"] = str(options["out"])
        return cls.from_dict(options)

    def replace(self, **changes: Any) -> "FinetuneConfig":
        return FinetuneConfig.from_dict({**self.to_dict(), **changes})

    def run_settings(self) -> dict[str, Any]:
        """The settings that define what is trained (everything but the operational fields)."""
        return {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL}

    # ----------------------------------------------------------------- validation
    def validate(self) -> "FinetuneConfig":
        """Check values that need no model or data; raise :class:`ConfigError` naming the option."""
        from emprobe.finetuning.schedules import SCHEDULES
        from emprobe.validate import field_types

        field_types(self)
        if not self.data:
            raise ConfigError("no training data: set `data` (a chat JSONL path or builtin:NAME)")
        if not self.out:
            raise ConfigError("no run directory: set `out`")
        if self.resume and self.overwrite:
            raise ConfigError("`resume` and `overwrite` exclude each other")
        positive = {"batch_size": self.batch_size, "grad_accum": self.grad_accum, "max_length": self.max_length,
                    "lora_r": self.lora_r}
        for name, v in positive.items():
            if int(v) < 1:
                raise ConfigError(f"`{name}` must be >= 1, got {v}")
        if not self.lr > 0:
            raise ConfigError(f"`lr` must be > 0, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown `schedule` {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.warmup_steps < 0:
            raise ConfigError(f"`warmup_steps` must be >= 0, got {self.warmup_steps}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"`max_steps` must be >= 1, got {self.max_steps}")
        if self.max_steps is None and not self.epochs > 0:
            raise ConfigError(f"`epochs` must be > 0, got {self.epochs}")
        if not 0.0 <= self.lora_dropout < 1.0:
            raise ConfigError(f"`lora_dropout` must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"`val_fraction` must be in (0, 1), got {self.val_fraction}")
        if self.val_ci is not None and not self.val_ci > 0:
            raise ConfigError(f"`val_ci` must be > 0 (nats/token), got {self.val_ci}")
        if self.val_max_examples is not None and self.val_max_examples < 1:
            raise ConfigError(f"`val_max_examples` must be >= 1, got {self.val_max_examples}")
        if not 0.0 <= self.decay_fraction <= 1.0:
            raise ConfigError(f"`decay_fraction` must be in [0, 1], got {self.decay_fraction}")
        if self.save_every is not None and self.save_every < 1:
            raise ConfigError(f"`save_every` must be >= 1, got {self.save_every}")
        if self.save_log_spaced is not None and self.save_log_spaced < 2:
            raise ConfigError(f"`save_log_spaced` must be >= 2 (step 0 and the last step), got {self.save_log_spaced}")
        if self.save_steps is not None and any(s < 0 for s in self.save_steps):
            raise ConfigError(f"`save_steps` must be >= 0, got {self.save_steps}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"`threads` must be >= 1, got {self.threads}")
        if self.device not in ("auto", "cpu") and not self.device.startswith(("cuda", "mps", "xpu")):
            raise ConfigError(f"`device` must be auto, cpu or an accelerator like cuda, got {self.device!r}")
        if self.max_steps is not None:
            self.checkpoint_steps(self.max_steps)  # explicit steps beyond `max_steps` fail before any loading
        if self.full and self.layers:
            raise ConfigError("`layers` restricts a LoRA adapter; it does not apply with `full`")
        from emprobe.finetuning.mitigation_options import validate_mitigations
        from emprobe.models.arch import check_dtype, resolve_layers

        if self.layers:
            resolve_layers(self.layers, 1 << 20)  # the syntax now; the range once the model's depth is known
        check_dtype(self.dtype)
        validate_mitigations(self)
        return self

    @property
    def interleave_count(self) -> int:
        """Examples of every batch drawn from ``interleave`` (0 without it)."""
        return round(self.interleave_fraction * self.batch_size) if self.interleave else 0

    # ----------------------------------------------------------------- steps
    def total_steps(self, n_train: int, world_size: int = 1) -> int:
        """Optimizer steps of the run: ``max_steps``, or ``epochs`` over ``n_train`` examples."""
        if self.max_steps is not None:
            return int(self.max_steps)
        per_rank = math.ceil(n_train / world_size)
        per_batch = self.batch_size - self.interleave_count  # examples of the training data in each batch
        per_epoch = max(1, math.ceil(math.ceil(per_rank / per_batch) / self.grad_accum))
        return max(1, math.ceil(self.epochs * per_epoch))

    def checkpoint_steps(self, total: int) -> list[int]:
        """The sorted steps to checkpoint in a run of ``total`` steps (always 0 and ``total``):
        :func:`~emprobe.finetuning.steps.checkpoint_steps` of ``save_steps``, ``save_every``, ``save_log_spaced``."""
        return checkpoint_steps(total, self.save_steps, self.save_every, self.save_log_spaced, self.max_steps)
