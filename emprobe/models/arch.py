"""Architecture helpers: where the decoder blocks are, layer validation, model fingerprints.

Layer convention (used by every emprobe API that takes a layer): layer ``l`` is the residual stream
*after* decoder block ``l`` (0-based), i.e. the block's own output = TransformerLens
``blocks.{l}.hook_resid_post`` = HF ``hidden_states[l + 1]``, except for the last layer, where HF's last
hidden state has already gone through the final norm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from emprobe.errors import ConfigError, ModelError

if TYPE_CHECKING:  # torch is imported where a model is touched, so layer specs and dtypes check without it
    import torch
    from torch import nn

#: dtype names accepted everywhere (``--dtype``, ``load_model(dtype=...)``)
DTYPES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16")

_LAYER_PATHS = ("model.layers", "model.decoder.layers", "transformer.h", "gpt_neox.layers", "layers")


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying transformers model of a peft ``PeftModel`` (or the model itself)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The ``ModuleList`` of decoder blocks; hooking block ``l``'s output gives layer ``l``."""
    from torch import nn

    base = unwrap(model)
    for path in _LAYER_PATHS:
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList):
            return obj
    raise ModelError(f"cannot find the decoder blocks of {type(base).__name__} (looked for {', '.join(_LAYER_PATHS)})")


def n_layers(model: nn.Module) -> int:
    return len(decoder_layers(model))


def d_model(model: nn.Module) -> int:
    cfg = unwrap(model).config
    cfg = getattr(cfg, "text_config", None) or cfg
    return int(cfg.hidden_size)


def resolve_layers(layers: str | int | Iterable[int] | None, total: int, param: str = "layers") -> list[int]:
    """Parse ``"all"``, ``"3"``, ``"0,5,-1"``, ``"10:20"``, ``"0:30:3"`` or a list into sorted unique layer indices.

    Negative indices count from the end. An index outside ``0..total-1`` raises :class:`ConfigError`
    naming ``param`` and the valid range.
    """
    if layers is None or (isinstance(layers, str) and layers.strip().lower() == "all"):
        return list(range(total))
    items: list[int] = []
    if isinstance(layers, int):
        items = [layers]
    elif isinstance(layers, str):
        for part in layers.replace(" ", "").split(","):
            if not part:
                continue
            try:
                if ":" in part:
                    lo, hi, *step = part.split(":", 2)
                    if step:  # LO:HI:STEP stops at the last layer (as patch's layer sweeps always did)
                        stop = min(int(hi), total) if hi else total
                        items += list(range(int(lo or 0), stop, int(step[0]) if step[0] else 1))
                    else:
                        items += list(range(int(lo or 0), int(hi) if hi else total))
                else:
                    items.append(int(part))
            except ValueError:
                raise ConfigError(f"bad `{param}` {layers!r}: use 'all', 'L', 'L1,L2', 'LO:HI' or 'LO:HI:STEP'") from None
    else:
        try:
            items = [int(x) for x in layers]
        except (TypeError, ValueError):
            raise ConfigError(f"`{param}` must be 'all', a layer spec like '0,5,-1' or a list of integers, got "
                              f"{layers!r}") from None
    out = []
    for layer in items:
        idx = layer + total if layer < 0 else layer
        if not 0 <= idx < total:
            raise ConfigError(f"unknown layer {layer} in `{param}`: valid layers are 0..{total - 1} "
                              "(layer l = residual stream after decoder block l)")
        out.append(idx)
    if not out:
        raise ConfigError(f"`{param}` {layers!r} selects no layer")
    return sorted(set(out))


def fingerprint(model: nn.Module) -> dict:
    """Architecture facts that must agree between a base model and anything derived from it."""
    base = unwrap(model)
    return {
        "architecture": type(base).__name__,
        "n_layers": n_layers(base),
        "d_model": d_model(base),
        "vocab_size": int(base.get_input_embeddings().weight.shape[0]),
    }


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in unwrap(model).parameters())


def check_dtype(dtype: "str | torch.dtype | None", param: str = "dtype") -> "str | torch.dtype | None":
    """``dtype`` when it is ``None``, a torch dtype or one of :data:`DTYPES` (checked without importing torch)."""
    if dtype is not None and type(dtype).__name__ != "dtype" and str(dtype).lower() not in DTYPES:
        raise ConfigError(f"unknown `{param}` {dtype!r}; use one of {', '.join(DTYPES)}")
    return dtype


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"``/``"fp32"``, ``"bfloat16"``/``"bf16"``, ``"float16"``/``"fp16"`` or a torch dtype."""
    check_dtype(dtype)
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    table = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
             "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
    return table[str(dtype).lower()]
