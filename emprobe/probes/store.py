"""``ActivationStore``: pooled activations ``[n_prompts, n_layers, d_model]`` per position, on disk.

Layout (written atomically as one directory)::

    STORE/
      manifest.json              model (name, adapter, fingerprint, dtype), layers, positions, prompt ids,
                                 prompt-set hash, backend, emprobe version, activations_sha256
      activations.safetensors    one float32 tensor per position: [n_prompts, n_layers, d_model]
      prompts.jsonl              one row per prompt: uid, question_id, label, pair, token counts,
                                 messages, response, meta

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``); the tensor's
second axis follows ``store.layers``. Positions: ``last_prompt``, ``prompt_mean``, ``response_mean``.
Reading and writing the directory (and every integrity check): :mod:`emprobe.probes.store_files`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from emprobe.errors import ConfigError, DataError
from emprobe.probes.store_files import (  # noqa: F401  (re-exported: the store's format, importable from here)
    KIND, MANIFEST, PROMPTS, TENSORS, new_manifest, read_store, tensors_sha256, write_store)


def model_identity(model_info: dict[str, Any]) -> dict[str, Any]:
    """The part of a model record that must agree between stores of "the same model" (adapters may differ)."""
    fp = model_info.get("fingerprint") or {}
    return {"name": model_info.get("name"), **{k: fp.get(k) for k in ("architecture", "n_layers", "d_model")}}


@dataclass
class ActivationStore:
    """Pooled activations with their prompts and provenance.

    ``tensors[position]`` is ``[n_prompts, len(layers), d_model]`` float32; ``records[i]`` describes row
    ``i`` (uid, question_id, label, pair, ...); ``manifest`` says what produced it.
    """

    tensors: dict[str, torch.Tensor]
    layers: list[int]
    records: list[dict[str, Any]]
    manifest: dict[str, Any]
    path: Path | None = None

    def __post_init__(self) -> None:
        if not self.tensors:
            raise DataError("activation store has no positions")
        n = len(self.records)
        for p, t in self.tensors.items():
            if t.ndim != 3 or t.shape[0] != n or t.shape[1] != len(self.layers):
                raise DataError(f"activation store tensor {p!r} has shape {tuple(t.shape)}, expected "
                                f"[{n}, {len(self.layers)}, d_model]")

    # ---- labelled access -------------------------------------------------------------------------
    @property
    def positions(self) -> list[str]:
        return list(self.tensors)

    @property
    def n_prompts(self) -> int:
        return len(self.records)

    @property
    def d_model(self) -> int:
        return int(next(iter(self.tensors.values())).shape[-1])

    @property
    def uids(self) -> list[str]:
        return [r["uid"] for r in self.records]

    @property
    def groups(self) -> np.ndarray:
        """Question ids (the cross-validation groups)."""
        return np.array([r["question_id"] for r in self.records], dtype=object)

    @property
    def pairs(self) -> np.ndarray:
        """Contrastive pair keys (``None`` where an item has no pair)."""
        return np.array([r.get("pair") for r in self.records], dtype=object)

    @property
    def labels(self) -> np.ndarray:
        """Float array: 1 misaligned, 0 aligned, NaN unlabelled."""
        return np.array([np.nan if r.get("label") is None else float(r["label"]) for r in self.records])

    @property
    def model(self) -> dict[str, Any]:
        return dict(self.manifest.get("model", {}))

    @property
    def prompt_hash(self) -> str:
        return str(self.manifest.get("prompt_set_sha256"))

    @property
    def sha256(self) -> str:
        return str(self.manifest.get("activations_sha256"))

    @property
    def contrast(self) -> str:
        return str(self.manifest.get("prompts", {}).get("contrast", "none"))

    def layer_index(self, layer: int) -> int:
        """Column of ``layer`` (negative counts from the model's last layer) in the stored tensors."""
        want = layer + self.n_model_layers if layer < 0 else layer
        if want not in self.layers:
            raise ConfigError(f"layer {layer} is not in this store (stored layers: {_ranges(self.layers)})")
        return self.layers.index(want)

    def resolve_layers(self, spec: "str | int | Sequence[int] | None" = "all") -> list[int]:
        """A layer spec (``all``/``None``, ``L``, ``L1,L2``, ``LO:HI[:STEP]``, negatives from the model's last
        layer) resolved against the store's *model* (stores of different models differ in depth) and checked
        against the stored layers: an unstored layer raises :class:`ConfigError` naming the stored ones.
        The one store-layer resolver (probe fitting and the priors analysis use it)."""
        if spec is None or (isinstance(spec, str) and spec.strip().lower() == "all"):
            return list(self.layers)
        from emprobe.models import resolve_layers

        wanted = resolve_layers(spec, self.n_model_layers)
        for layer in wanted:
            self.layer_index(layer)  # raises naming the stored layers
        return wanted

    @property
    def n_model_layers(self) -> int:
        """Decoder blocks of the model the store came from (its fingerprint; else the deepest stored + 1)."""
        return int(self.model.get("fingerprint", {}).get("n_layers") or (max(self.layers) + 1))

    def get(self, position: str | None = None, layers: int | Sequence[int] | None = None) -> torch.Tensor:
        """``[n, L, D]`` for a list of layers (all stored if ``None``) or ``[n, D]`` for one int layer.

        ``position`` defaults to the only stored position, else ``response_mean`` if stored, else
        ``last_prompt``.
        """
        position = self.check_position(self.default_position() if position is None else position)
        t = self.tensors[position]
        if layers is None:
            return t
        if isinstance(layers, (int, np.integer)):
            return t[:, self.layer_index(int(layers))]
        return t[:, [self.layer_index(int(x)) for x in layers]]

    def check_position(self, position: str, param: str = "position") -> str:
        """``position`` when it is a known position stored here; else a one-line :class:`ConfigError` saying
        whether the name is unknown or just not stored."""
        from emprobe.probes.tokens import POSITIONS

        if position not in POSITIONS:
            raise ConfigError(f"unknown `{param}` {position!r}; positions are {', '.join(POSITIONS)} "
                              f"(this store holds {', '.join(self.tensors)})")
        if position not in self.tensors:
            raise ConfigError(f"`{param}` {position!r} is not in this store (stored: {', '.join(self.tensors)})")
        return position

    def __getitem__(self, key) -> torch.Tensor:
        """TransformerLens-cache-style indexing: ``store["last_prompt", 10]`` -> ``[n_prompts, d_model]``,
        ``store["last_prompt", [10, 12]]`` -> ``[n_prompts, 2, d_model]``, ``store["last_prompt"]`` -> every stored
        layer ``[n_prompts, n_layers, d_model]``; with one stored position ``store[10]`` and ``store[[10, 12]]``
        (layer ``l`` = residual stream after decoder block ``l``; negative layers count from the model's last)."""
        position, layers = key if isinstance(key, tuple) else (key, None) if isinstance(key, str) else (None, key)
        if isinstance(key, tuple) and len(key) != 2:
            raise ConfigError(f"index a store as store[position, layer], got {len(key)} keys")
        if position is None and len(self.tensors) > 1:
            raise ConfigError(f"this store holds {len(self.tensors)} positions ({', '.join(self.tensors)}); index it "
                              "as store[position, layer]")
        return self.get(position, layers)

    def default_position(self) -> str:
        for p in ("response_mean", "last_prompt"):
            if p in self.tensors:
                return p
        return self.positions[0]

    def frame(self):
        """The prompt records as a pandas DataFrame (one row per stored prompt)."""
        import pandas as pd

        return pd.DataFrame(self.records)

    # ---- compatibility ---------------------------------------------------------------------------
    def check_compatible(self, other: "ActivationStore", same_prompts: bool = True,
                         same_adapter: bool = False) -> None:
        """Refuse to mix stores of different models (or prompt sets / adapters when asked)."""
        a, b = model_identity(self.model), model_identity(other.model)
        if a != b:
            raise DataError(f"activation stores come from different models ({_model_str(self.model)} vs "
                            f"{_model_str(other.model)}); extract both from the same base model")
        if same_adapter and self.model.get("adapter") != other.model.get("adapter"):
            raise DataError(f"activation stores come from different adapters ({self.model.get('adapter')} vs "
                            f"{other.model.get('adapter')})")
        if same_prompts and self.prompt_hash != other.prompt_hash:
            raise DataError(f"activation stores hold different prompt sets (sha256 {self.prompt_hash[:12]} vs "
                            f"{other.prompt_hash[:12]}); extract both from the same `prompts`")

    # ---- disk ------------------------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the store directory atomically; a store (or other output) emprobe wrote at ``path`` is replaced
        only with ``overwrite``, anything else never (see :mod:`emprobe.outdir`)."""
        self.path = write_store(path, self.tensors, self.layers, self.records, self.manifest, overwrite=overwrite)
        return self.path

    @classmethod
    def load(cls, path: "str | Path | ActivationStore", *, param: str = "store") -> "ActivationStore":
        """Read a store written by :meth:`save` (tensors from safetensors only); a loaded store is returned as it is.

        Integrity is checked before use: the manifest, the safetensors header (a truncated file), the tensors'
        sha256 against the manifest's ``activations_sha256`` (flipped bytes), and the manifest's layers,
        positions, ``d_model`` and prompt count against the tensors; any mismatch is a one-line :class:`DataError`.
        """
        from emprobe.validate import existing_dir

        if isinstance(path, ActivationStore):
            return path
        existing_dir(path, param, "activation store", loaded=("ActivationStore",))
        tensors, layers, records, man = read_store(Path(path))
        return cls(tensors, layers, records, man, Path(path))


def ensure_compatible(stores: Sequence[ActivationStore], same_prompts: bool = True) -> None:
    """Raise :class:`DataError` unless every store shares the first one's model (and prompt set)."""
    for s in stores[1:]:
        stores[0].check_compatible(s, same_prompts=same_prompts)


def _model_str(m: dict[str, Any]) -> str:
    ident = model_identity(m)
    return f"{ident['name']} [{ident['architecture']}, {ident['n_layers']} layers, d {ident['d_model']}]"


def _ranges(xs: Sequence[int]) -> str:
    xs = sorted(xs)
    if xs and xs == list(range(xs[0], xs[-1] + 1)) and len(xs) > 2:
        return f"{xs[0]}..{xs[-1]}"
    return ",".join(map(str, xs))
