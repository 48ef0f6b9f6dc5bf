"""The trained weights of a fine-tune: the peft ``LoraConfig`` of a :class:`FinetuneConfig`, the adapter attached
to the loaded model, and how each checkpoint's weights are written (the adapter, or full weights)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from emprobe.errors import ConfigError
from emprobe.finetuning.config import FinetuneConfig


def lora_config(cfg: FinetuneConfig, n_layers: int):
    """The peft ``LoraConfig`` for ``cfg`` (``layers`` restricts the adapter to those decoder blocks)."""
    from peft import LoraConfig

    from emprobe.models import resolve_layers

    targets: Any = cfg.targets.strip()
    if targets != "all-linear":
        targets = [t.strip() for t in targets.split(",") if t.strip()]
        if not targets:
            raise ConfigError("`targets` is empty: use all-linear or module names like q_proj,v_proj")
    layers = None
    if cfg.layers and cfg.layers.strip().lower() != "all":
        layers = resolve_layers(cfg.layers, n_layers)
    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules=targets, layers_to_transform=layers, use_rslora=cfg.rslora,
                      bias="none", task_type="CAUSAL_LM")


def attach_lora(model, cfg: FinetuneConfig, n_layers: int):
    """``model`` with the LoRA adapter of ``cfg`` attached (peft); a ``targets`` the model lacks is a ConfigError."""
    from peft import get_peft_model

    config = lora_config(cfg, n_layers)  # a bad `layers` is reported as such, not as a `targets` problem
    try:
        return get_peft_model(model, config)
    except ValueError as e:
        first = str(e).strip().splitlines()[0]
        raise ConfigError(f"`targets` {cfg.targets!r} does not fit this model: {first}") from None


def weights_saver(full: bool, tokenizer, base_name: str) -> Callable[[Any, Path], None]:
    """How a checkpoint's weights are written: the peft adapter, or full weights + config + tokenizer.

    Adapters name ``base_name`` (the model spec, e.g. the alias) as their base. During training peft keeps
    the local model directory there, so that its save never looks the alias up on the hub.
    """
    from emprobe.models.adapters import ADAPTER_CONFIG
    from emprobe.models.arch import unwrap

    def save(model, d: Path) -> None:
        if full:
            unwrap(model).save_pretrained(d, safe_serialization=True)
            tokenizer.save_pretrained(d)
            return
        model.save_pretrained(d, safe_serialization=True)
        (d / "README.md").unlink(missing_ok=True)  # peft's empty model card
        conf = json.loads((d / ADAPTER_CONFIG).read_text())
        conf["base_model_name_or_path"] = base_name
        (d / ADAPTER_CONFIG).write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")

    return save
