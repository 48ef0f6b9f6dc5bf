"""Models: load built-in aliases, hub ids or local directories, with optional LoRA adapters.

Built-in aliases (``smollm2-135m-instruct``, ``gemma-3-270m``) come from GGUF files inside PyPI packages
and are cached as safetensors under ``$EMPROBE_HOME`` (default ``~/.cache/emprobe``) on first use.
Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from emprobe.models.adapters import attach_adapter, check_adapter, read_adapter_config
from emprobe.models.arch import (
    d_model, decoder_layers, fingerprint, n_layers, n_parameters, parse_dtype, resolve_layers, unwrap,
)
from emprobe.models.cache import cache_dir, is_prepared, prepare
from emprobe.models.chat import ChatFormatter
from emprobe.models.loading import LoadedModel, ModelSpec, load_model
from emprobe.models.registry import BUILTIN_MODELS, DEFAULT_MODEL, BuiltinModel

__all__ = [
    "BUILTIN_MODELS", "DEFAULT_MODEL", "BuiltinModel", "ChatFormatter", "LoadedModel", "ModelSpec",
    "attach_adapter", "cache_dir", "check_adapter", "d_model", "decoder_layers", "fingerprint", "is_prepared",
    "load_model", "n_layers", "n_parameters", "parse_dtype", "prepare", "read_adapter_config",
    "resolve_layers", "unwrap",
]
