"""Models: load built-in aliases, hub ids or local directories, with optional LoRA adapters.

Built-in aliases (``smollm2-135m-instruct``, ``gemma-3-270m``) come from GGUF files inside PyPI packages
and are cached as safetensors under ``$EMPROBE_HOME`` (default ``~/.cache/emprobe``) on first use.
Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).

The names below load on first use, so ``emprobe.models.registry`` (aliases, the default model) and the
command line stay free of torch until a model is really needed.
"""

from emprobe.lazy import lazy_names

#: public name -> submodule that defines it
_NAMES = {
    "attach_adapter": "adapters", "check_adapter": "adapters", "read_adapter_config": "adapters",
    "d_model": "arch", "decoder_layers": "arch", "fingerprint": "arch", "n_layers": "arch", "n_parameters": "arch",
    "parse_dtype": "arch", "resolve_layers": "arch", "unwrap": "arch",
    "cache_dir": "cache", "is_prepared": "cache", "prepare": "cache", "ChatFormatter": "chat",
    "LoadedModel": "loading", "ModelSpec": "loading", "load_model": "loading",
    "BUILTIN_MODELS": "registry", "DEFAULT_MODEL": "registry", "BuiltinModel": "registry",
}

__all__ = sorted(_NAMES)


__getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
