"""Dequantize a built-in GGUF model once and cache it as safetensors under ``$EMPROBE_HOME/models``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from emprobe.errors import ModelError
from emprobe.io import atomic_dir, emprobe_home, manifest, read_json, write_json
from emprobe.models.registry import BUILTIN_MODELS

MARKER = "emprobe_model.json"


def cache_dir(alias: str) -> Path:
    """Where the safetensors copy of a built-in model lives."""
    return emprobe_home() / "models" / alias


def is_prepared(alias: str) -> bool:
    """True when the cache holds a complete copy (written atomically, so the marker means complete)."""
    return (cache_dir(alias) / MARKER).is_file()


def prepare(alias: str, force: bool = False, log=print) -> Path:
    """Dequantize ``alias``'s GGUF into safetensors (once) and return the cache directory.

    The copy is built in a temporary directory and renamed into place, so an interrupted prepare never
    leaves a half-written model. Later loads read the cache (about a second).
    """
    if alias not in BUILTIN_MODELS:
        raise ModelError(f"unknown built-in model {alias!r}; available: {', '.join(BUILTIN_MODELS)}")
    target = cache_dir(alias)
    if is_prepared(alias) and not force:
        return target
    entry = BUILTIN_MODELS[alias]
    entry.check_installed()  # fail early, with the pip command, if a package is missing
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    t0 = time.perf_counter()
    log(f"preparing {alias}: dequantizing {entry.gguf_name} (once; 20-100 s) ...")
    scratch = emprobe_home() / "gguf"
    scratch.mkdir(parents=True, exist_ok=True)
    gguf = entry.locate_gguf(scratch)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as e:  # transformers raises many types here
        raise ModelError(f"cannot dequantize {gguf}: {type(e).__name__}: {e}") from None
    # The weights are plain fp32 now; drop the GGUF quantizer so save_pretrained accepts them.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(target, overwrite=True) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_json(tmp / MARKER, manifest(
            "model-cache", alias=alias, source_gguf=entry.gguf_name, requirements=list(entry.requirements),
            dequantize_seconds=round(time.perf_counter() - t0, 1),
        ))
    if gguf.parent == scratch:  # an assembled copy, not the package's own file
        gguf.unlink(missing_ok=True)
    log(f"prepared {alias} in {time.perf_counter() - t0:.1f} s -> {target}")
    return target


def cache_info(alias: str) -> dict:
    """The cache marker (what produced the cached copy), or ``{}`` if not prepared."""
    return read_json(cache_dir(alias) / MARKER) if is_prepared(alias) else {}


def remove(alias: str) -> None:
    """Delete a cached model."""
    shutil.rmtree(cache_dir(alias), ignore_errors=True)

