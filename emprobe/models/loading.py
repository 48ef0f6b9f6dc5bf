"""``load_model``: built-in aliases, hub ids and local directories, with an optional LoRA adapter."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

from emprobe.errors import ConfigError, ModelError
from emprobe.models.adapters import attach_adapter
from emprobe.models.arch import d_model, fingerprint, n_layers, n_parameters, parse_dtype, unwrap
from emprobe.models.chat import ChatFormatter, read_template
from emprobe.models.registry import BUILTIN_MODELS, DEFAULT_MODEL
from emprobe.models.resolve import describe_placement, placement, resolve


@dataclass
class ModelSpec:
    """What to load (peft-style config dataclass).

    ``name`` is a built-in alias (``emprobe models list``), a Hugging Face hub id or a local directory;
    ``adapter`` an optional peft LoRA directory. ``chat_template`` overrides the tokenizer's template
    (a file path or a Jinja string). ``trust_remote_code`` stays off unless you ask.
    """

    name: str = DEFAULT_MODEL
    adapter: str | None = None
    revision: str | None = None
    dtype: str = "float32"  # float32 | bfloat16 | float16 (fp32 / bf16 / fp16 accepted)
    device: str | dict = "cpu"  # cpu | cuda | cuda:N | mps | auto (device_map="auto") | a device_map dict
    trust_remote_code: bool = False
    chat_template: str | None = None

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_MODELS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def coerce(cls, spec: "str | ModelSpec", **overrides: Any) -> "ModelSpec":
        """A :class:`ModelSpec` from a string or a spec; non-``None`` overrides replace fields."""
        base = spec if isinstance(spec, ModelSpec) else cls(name=str(spec))
        kw = {k: v for k, v in overrides.items() if v is not None}
        return cls(**{**asdict(base), **kw})


@dataclass
class LoadedModel:
    """A loaded model with its tokenizer and chat formatter. Unpacks as ``model, tokenizer``."""

    model: nn.Module
    tokenizer: Any
    spec: ModelSpec
    chat: ChatFormatter | None
    path: str
    load_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.tokenizer))

    @property
    def n_layers(self) -> int:
        return n_layers(self.model)

    @property
    def d_model(self) -> int:
        return d_model(self.model)

    def require_chat(self) -> ChatFormatter:
        """The chat formatter, or a one-line error if the model has no chat template."""
        if self.chat is None:
            ChatFormatter(self.tokenizer, model_name=self.spec.name)  # raises the standard message
        return self.chat  # type: ignore[return-value]

    def info(self) -> dict[str, Any]:
        """Facts a researcher wants first: layers, width, parameters, chat template source."""
        return {
            "name": self.spec.name,
            "path": self.path,
            "adapter": self.spec.adapter,
            **fingerprint(self.model),
            "n_parameters": n_parameters(self.model),
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
            "device": describe_placement(unwrap(self.model)),
            "chat_template_source": self.chat.source if self.chat else "none",
            "layer_convention": "layer l = residual stream after decoder block l (TL blocks.{l}.hook_resid_post)",
            "load_seconds": round(self.load_seconds, 2),
        }


def _add_stop_tokens(model: nn.Module, tok: Any, tokens: tuple[str, ...]) -> None:
    """Make ``generate`` stop at the template's end-of-turn tokens as well as at EOS."""
    gc = getattr(model, "generation_config", None)
    if gc is None or not tokens:
        return
    eos = gc.eos_token_id if gc.eos_token_id is not None else tok.eos_token_id
    eos = list(eos) if isinstance(eos, (list, tuple)) else [eos]
    gc.eos_token_id = eos + [i for i in tok.convert_tokens_to_ids(list(tokens)) if i not in eos]


def _from_pretrained(spec: ModelSpec, path: str, kind: str, model_kw: dict, local_only: bool):
    """``(model, tokenizer)`` from a directory or hub id; one-line :class:`ModelError` on failure."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emprobe.verbosity import quiet

    kw = dict(revision=spec.revision, trust_remote_code=spec.trust_remote_code, local_files_only=local_only)
    try:
        with quiet():
            tok = AutoTokenizer.from_pretrained(path, **kw)
            model = AutoModelForCausalLM.from_pretrained(path, use_safetensors=True, **model_kw, **kw)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = "hub id" if kind == "hub" else "directory"
        hint = f" (not a built-in alias: {', '.join(BUILTIN_MODELS)})" if kind == "hub" else ""
        raise ModelError(f"cannot load model {spec.name!r} as a {where}{hint}: {first}") from None
    return model, tok


def load_model(
    spec: str | ModelSpec = DEFAULT_MODEL,
    adapter: str | Path | None = None,
    dtype: str | torch.dtype | None = None,
    device: str | dict | None = None,
    *,
    revision: str | None = None,
    trust_remote_code: bool | None = None,
    chat_template: str | None = None,
    merge: bool = False,
    log=print,
) -> LoadedModel:
    """Load a causal LM + tokenizer (+ optional peft LoRA adapter) in eval mode.

    ``spec``: a built-in alias (dequantized from its packaged GGUF on first use and cached under
    ``$EMPROBE_HOME``), a hub id, a local directory, or a :class:`ModelSpec`. Weights load from
    safetensors only. A LoRA adapter whose shapes do not fit the base raises :class:`ModelError`.
    ``dtype``: ``fp32`` (default) | ``bf16`` | ``fp16``; ``device``: ``cpu`` (default) | ``cuda[:N]`` |
    ``mps`` | ``auto`` (``device_map="auto"`` across GPUs) | a ``device_map`` dict. Whatever the dtype,
    activations are stored and log-probs computed in float32 downstream.
    ``merge=True`` folds the adapter into the weights (a plain model, ~20 % faster forwards on CPU).
    A :class:`LoadedModel` is returned as it is (so every verb accepts a loaded model or a name).
    """
    from emprobe.validate import adapter_arg, model_arg

    if isinstance(spec, LoadedModel):
        if adapter is not None:
            raise ConfigError("pass the adapter when loading: load_model(name, adapter=...), not to a loaded model")
        return spec
    model_arg(spec, "spec")
    spec = ModelSpec.coerce(spec, adapter=str(adapter) if adapter else None,
                            dtype=str(parse_dtype(dtype)).removeprefix("torch.") if dtype is not None else None,
                            device=device, revision=revision, trust_remote_code=trust_remote_code,
                            chat_template=chat_template)
    model_arg(spec.name, "spec")
    adapter_arg(spec.adapter)  # a missing, truncated or corrupt adapter fails before the base model loads
    place, move_to = placement(spec.device)
    t0 = time.perf_counter()
    path, kind, local_only = resolve(spec, log)
    model, tok = _from_pretrained(spec, path, kind, dict(dtype=parse_dtype(spec.dtype), **place), local_only)
    if move_to is not None:
        model.to(move_to)
    model.eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    template_source = "tokenizer"
    if spec.chat_template:
        tok.chat_template, template_source = read_template(spec.chat_template), f"user: {spec.chat_template[:60]}"
    elif not getattr(tok, "chat_template", None) and kind == "builtin":
        entry = BUILTIN_MODELS[spec.name]
        if entry.fallback_chat_template:
            tok.chat_template, template_source = entry.fallback_chat_template, entry.fallback_template_source
    if kind == "builtin":
        _add_stop_tokens(model, tok, BUILTIN_MODELS[spec.name].stop_tokens)
    chat = ChatFormatter(tok, template_source, spec.name) if getattr(tok, "chat_template", None) else None
    if spec.adapter:
        model = attach_adapter(model, spec.adapter, base_names={spec.name, path}).eval()
        if merge:
            model = model.merge_and_unload().eval()
    return LoadedModel(model, tok, spec, chat, path, time.perf_counter() - t0)
