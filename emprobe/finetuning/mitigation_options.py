"""The mitigation options of ``FinetuneConfig`` checked without torch (:mod:`emprobe.finetuning.mitigations` holds
what they do): their names, ranges, combinations, that their input files and directions exist, and a run's label,
so a bad option is a one-line error before the model loads (``emprobe finetune --kl-to-base 0.1`` without
``--kl-data``: about a second); a study's config checks its mitigation sets with these too.
"""

from __future__ import annotations

import math
from typing import Any

from emprobe.errors import ConfigError

#: each mitigation's switch (a ``FinetuneConfig`` field) and its short name
OPTIONS = {"kl_to_base": "kl", "interleave": "interleave", "inoculation_prompt": "inoculation",
           "steer_during_training": "steer", "ablate_during_training": "ablate"}
#: every ``FinetuneConfig`` field that belongs to a mitigation (switches and their parameters)
FIELDS = ("kl_to_base", "kl_data", "kl_batch_size", "interleave", "interleave_fraction", "inoculation_prompt",
          "steer_during_training", "steer_alpha", "ablate_during_training", "direction_layer")


def validate_mitigations(cfg, inputs: bool = True) -> None:
    """Check the mitigation options of a ``FinetuneConfig`` (no model or data needed); one-line errors."""
    if not (cfg.kl_to_base >= 0 and math.isfinite(cfg.kl_to_base)):
        raise ConfigError(f"`kl_to_base` must be a finite β >= 0, got {cfg.kl_to_base}")
    if cfg.kl_to_base > 0 and not cfg.kl_data:
        raise ConfigError("`kl_to_base` needs `kl_data`: an off-domain chat set (builtin:NAME or JSONL)")
    if cfg.kl_data and not cfg.kl_to_base > 0:
        raise ConfigError("`kl_data` is set but `kl_to_base` is 0: give β > 0 or drop `kl_data`")
    if cfg.kl_to_base > 0 and cfg.full:
        raise ConfigError("`kl_to_base` needs a LoRA run (the base side is the model with its adapter disabled); "
                          "drop `full`")
    if cfg.kl_batch_size is not None and cfg.kl_batch_size < 1:
        raise ConfigError(f"`kl_batch_size` must be >= 1, got {cfg.kl_batch_size}")
    if cfg.interleave:
        k = cfg.interleave_count
        if not 0 < cfg.interleave_fraction < 1 or not 1 <= k < cfg.batch_size:
            raise ConfigError(f"`interleave_fraction` {cfg.interleave_fraction:g} of `batch_size` {cfg.batch_size} "
                              f"gives {k} interleaved examples per batch; it must leave 1 to {cfg.batch_size - 1}")
    if cfg.inoculation_prompt is not None and not str(cfg.inoculation_prompt).strip():
        raise ConfigError("`inoculation_prompt` is empty")
    if not math.isfinite(cfg.steer_alpha):
        raise ConfigError(f"`steer_alpha` must be finite, got {cfg.steer_alpha}")
    if cfg.direction_layer is not None and not (cfg.steer_during_training or cfg.ablate_during_training):
        raise ConfigError("`direction_layer` needs `steer_during_training` or `ablate_during_training`")
    if inputs:  # a study names its own directions (`persona`, `mean_diff`) before they exist
        _check_inputs(cfg)


def _check_inputs(cfg) -> None:
    """The mitigations' data sets exist (or are built in) and their directions are direction directories."""
    from emprobe.validate import check_as

    for name in ("kl_data", "interleave"):
        if getattr(cfg, name):
            check_as("data", getattr(cfg, name), name)
    for name in ("steer_during_training", "ablate_during_training"):
        if getattr(cfg, name) is not None:
            check_as("direction", getattr(cfg, name), name)


def mitigation_label(settings: dict[str, Any]) -> str:
    """``"none"``, or the mitigations a run's settings enable joined by ``+`` (e.g. ``"kl+steer"``)."""
    return "+".join(short for key, short in OPTIONS.items() if settings.get(key)) or "none"
