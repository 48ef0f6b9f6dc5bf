"""Learning-rate schedules: emprobe's names mapped onto transformers' schedulers.

=======================  ==========================================================================
``constant``             warmup (linear, optional) then the peak learning rate
``linear``               warmup then linear decay to 0 at the last step
``cosine``               warmup then half-cosine decay to 0
``cosine-with-restarts`` warmup then ``num_cycles`` cosine decays, each restarting at the peak
``warmup-stable-decay``  warmup, constant, then a cosine decay over the last ``decay_fraction`` of the
                         steps to ``min_lr_ratio`` x peak (WSD)
=======================  ==========================================================================
"""

from __future__ import annotations

from typing import Any

#: emprobe schedule name -> transformers ``lr_scheduler_type``
SCHEDULES: dict[str, str] = {
    "constant": "constant_with_warmup",
    "linear": "linear",
    "cosine": "cosine",
    "cosine-with-restarts": "cosine_with_restarts",
    "warmup-stable-decay": "warmup_stable_decay",
}


def scheduler_args(cfg, total_steps: int) -> tuple[str, dict[str, Any]]:
    """``(lr_scheduler_type, lr_scheduler_kwargs)`` for transformers' ``TrainingArguments``."""
    from emprobe.errors import ConfigError

    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"unknown schedule {cfg.schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if cfg.warmup_steps > total_steps:
        raise ConfigError(f"`warmup_steps` {cfg.warmup_steps} exceeds the run's {total_steps} steps")
    kwargs: dict[str, Any] = {}
    if cfg.schedule == "cosine-with-restarts":
        kwargs["num_cycles"] = int(cfg.num_cycles)
    elif cfg.schedule == "warmup-stable-decay":
        decay = round(cfg.decay_fraction * total_steps)
        decay = min(decay, total_steps - cfg.warmup_steps)
        kwargs.update(num_decay_steps=decay, min_lr_ratio=float(cfg.min_lr_ratio))
    return SCHEDULES[cfg.schedule], kwargs


def lr_curve(cfg, total_steps: int) -> list[float]:
    """The learning rate used at optimizer steps ``1..total_steps`` (for plots and checks)."""
    import torch
    from transformers import get_scheduler

    name, kwargs = scheduler_args(cfg, total_steps)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    sched = get_scheduler(name, opt, num_warmup_steps=cfg.warmup_steps, num_training_steps=total_steps,
                          scheduler_specific_kwargs=kwargs)
    out = []
    for _ in range(total_steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out
