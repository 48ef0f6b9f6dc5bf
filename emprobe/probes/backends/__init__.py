"""Activation backends behind one interface (:class:`ActivationBackend`): ``hooks`` (default, plain
PyTorch forward hooks), ``transformerlens`` (``TransformerBridge``) and ``nnsight``.

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); positions
``last_prompt``, ``prompt_mean``, ``response_mean``.
"""

from __future__ import annotations

from emprobe.errors import ConfigError
from emprobe.probes.backends.base import ActivationBackend
from emprobe.probes.backends.hooks import HooksBackend
from emprobe.probes.backends.nnsight import NNsightBackend
from emprobe.probes.backends.transformerlens import TransformerLensBackend

BACKENDS: dict[str, type[ActivationBackend]] = {
    b.name: b for b in (HooksBackend, TransformerLensBackend, NNsightBackend)
}
ALIASES = {"tl": "transformerlens", "transformer_lens": "transformerlens", "torch": "hooks"}


def get_backend(name: str | ActivationBackend, lm, remote: bool = False) -> ActivationBackend:
    """A backend instance for ``lm`` by name (``hooks``, ``transformerlens``/``tl``, ``nnsight``)."""
    if isinstance(name, ActivationBackend):
        if name.lm is not lm:
            raise ConfigError(f"this {name.name} backend was built for another loaded model")
        return name
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; use one of {', '.join(BACKENDS)}")
    if remote and key != "nnsight":
        raise ConfigError("`remote` runs on NDIF and needs `backend` nnsight")
    return NNsightBackend(lm, remote=True) if remote else BACKENDS[key](lm)


__all__ = ["ActivationBackend", "BACKENDS", "HooksBackend", "NNsightBackend",
           "TransformerLensBackend", "get_backend"]
