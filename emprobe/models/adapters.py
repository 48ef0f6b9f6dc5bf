"""peft LoRA adapters (fine-tuning checkpoints): validation against a base model, and attaching them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from emprobe.errors import DataError, ModelError

if TYPE_CHECKING:  # torch loads with the model, not when an adapter directory is checked
    from torch import nn

log = logging.getLogger(__name__)
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


def read_adapter_config(adapter_dir: str | Path) -> dict:
    """The adapter's ``adapter_config.json``; refuses directories without safetensors weights, and weights whose
    safetensors header says the file is truncated or corrupt (checked without loading them)."""
    from emprobe.io import safetensors_header

    d = Path(adapter_dir)
    if not d.is_dir():
        raise ModelError(f"adapter {d}: no such directory" if not d.exists() else f"adapter {d} is a file, "
                         "not a peft adapter directory")
    if not (d / ADAPTER_CONFIG).is_file():
        raise ModelError(f"{d}: not a peft adapter directory (no {ADAPTER_CONFIG})")
    if not (d / ADAPTER_WEIGHTS).is_file():
        extra = " (found pickle weights adapter_model.bin: emprobe loads safetensors only)" if (
            d / "adapter_model.bin").exists() else ""
        raise ModelError(f"{d}: no {ADAPTER_WEIGHTS}{extra}")
    try:
        cfg = json.loads((d / ADAPTER_CONFIG).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelError(f"{d / ADAPTER_CONFIG}: invalid JSON ({getattr(e, 'msg', e)})") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"{d / ADAPTER_CONFIG}: expected a JSON object (a peft LoraConfig)")
    try:
        safetensors_header(d / ADAPTER_WEIGHTS, "adapter weights file")
    except DataError as e:
        raise ModelError(f"{e}; the adapter cannot be used: re-save it, or point at another checkpoint") from None
    return cfg


def check_adapter(model: nn.Module, adapter_dir: str | Path, base_names: set[str] | None = None) -> dict:
    """Refuse an adapter whose LoRA weights do not fit ``model``'s modules; return its config.

    Every ``lora_A`` / ``lora_B`` tensor must target an existing linear module of matching in/out size.
    A different ``base_model_name_or_path`` with fitting shapes only logs a warning (a renamed copy of the
    same base is common on the hub).
    """
    from safetensors import safe_open

    from emprobe.models.arch import unwrap

    d = Path(adapter_dir)
    cfg = read_adapter_config(d)
    claimed = cfg.get("base_model_name_or_path") or "?"
    base = unwrap(model)
    modules = dict(base.named_modules())
    with safe_open(str(d / ADAPTER_WEIGHTS), framework="pt") as f:
        for key in f.keys():
            for tag, dim in ((".lora_A.", 1), (".lora_B.", 0)):
                if tag not in key:
                    continue
                name = key.split(tag)[0].removeprefix("base_model.model.")
                shape = f.get_slice(key).get_shape()
                mod = modules.get(name)
                if mod is None:
                    raise ModelError(f"adapter {d} was trained for base {claimed!r}: module {name!r} does not "
                                     f"exist in {type(base).__name__}")
                want = getattr(mod, "in_features" if dim == 1 else "out_features", None)
                if want is None and hasattr(mod, "base_layer"):  # already wrapped by peft
                    want = getattr(mod.base_layer, "in_features" if dim == 1 else "out_features", None)
                if want is not None and shape[dim] != want:
                    raise ModelError(f"adapter {d} was trained for base {claimed!r}, not this model: {name} has "
                                     f"{'in' if dim == 1 else 'out'}_features {want}, adapter expects {shape[dim]}")
    if base_names and claimed not in base_names and Path(claimed).name not in base_names:
        log.warning("adapter %s names base %r, loading onto %s (shapes fit)", d, claimed, sorted(base_names)[0])
    return cfg


def attach_adapter(model: nn.Module, adapter_dir: str | Path, adapter_name: str = "default",
                   base_names: set[str] | None = None) -> nn.Module:
    """Load a LoRA adapter onto ``model`` (wrapping it in a ``PeftModel`` if needed) and activate it."""
    import warnings

    from peft import PeftModel

    check_adapter(model, adapter_dir, base_names)
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
    try:
        if isinstance(model, PeftModel):
            model.load_adapter(str(adapter_dir), adapter_name=adapter_name, is_trainable=False)
            model.set_adapter(adapter_name)
            return model
        return PeftModel.from_pretrained(model, str(adapter_dir), adapter_name=adapter_name, is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load adapter {adapter_dir}: {first}") from None
