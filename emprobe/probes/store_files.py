"""The on-disk format of an :class:`~emprobe.probes.store.ActivationStore` (layout in :mod:`emprobe.probes.store`):
the file names, the tensors' hash, the manifest, and reading / writing the directory with every integrity check."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from emprobe.errors import DataError
from emprobe.io import atomic_dir, json_safe, manifest as make_manifest, read_json, write_json

TENSORS = "activations.safetensors"
MANIFEST = "manifest.json"
PROMPTS = "prompts.jsonl"
KIND = "activation_store"


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """Hash of the tensors' names, shapes and bytes (independent of file layout)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(memoryview(t.numpy()).cast("B"))  # no copy of the tensor
    return h.hexdigest()


def new_manifest(*, model: dict[str, Any], layers: list[int], positions: list[str], prompts: dict[str, Any],
                 prompt_set_sha256: str, tensors: dict[str, torch.Tensor], **extra: Any) -> dict[str, Any]:
    """The store manifest (adds emprobe's version, a timestamp and the tensors' hash)."""
    return make_manifest(KIND, model=model, layers=layers, positions=positions, prompts=prompts,
                         prompt_set_sha256=prompt_set_sha256, activations_sha256=tensors_sha256(tensors),
                         layer_convention="layer l = residual stream after decoder block l "
                                          "(TL blocks.{l}.hook_resid_post)", **extra)


def write_store(path: str | Path, tensors: dict[str, torch.Tensor], layers: list[int],
                records: list[dict[str, Any]], manifest: dict[str, Any], *, overwrite: bool = False) -> Path:
    """Write a store directory atomically (see :meth:`~emprobe.probes.store.ActivationStore.save`)."""
    from safetensors.torch import save

    path = Path(path)
    with atomic_dir(path, overwrite=overwrite) as tmp:
        (tmp / TENSORS).write_bytes(save({p: t.contiguous() for p, t in tensors.items()},
                                         metadata={"layers": json.dumps(layers), "kind": KIND}))
        with open(tmp / PROMPTS, "w", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(json_safe(r), ensure_ascii=False, default=str) + "\n")
        write_json(tmp / MANIFEST, manifest)
    return path


def read_store(path: Path) -> tuple[dict[str, torch.Tensor], list[int], list[dict[str, Any]], dict[str, Any]]:
    """``(tensors, layers, records, manifest)`` of the store directory ``path``, each checked (see
    :meth:`~emprobe.probes.store.ActivationStore.load`); any mismatch is a one-line :class:`DataError`."""
    from emprobe.io import safetensors_header

    if not (path / MANIFEST).is_file() or not (path / TENSORS).is_file():
        raise DataError(f"{path}: not an emprobe activation store (needs {MANIFEST} and {TENSORS})")
    man = read_json(path / MANIFEST)
    if not isinstance(man, dict) or man.get("kind") != KIND:
        raise DataError(f"{path}: manifest kind is {man.get('kind') if isinstance(man, dict) else None!r}, "
                        f"not {KIND!r}")
    safetensors_header(path / TENSORS, "activations file")
    from safetensors.torch import load_file

    tensors = load_file(str(path / TENSORS))
    if man.get("activations_sha256") and tensors_sha256(tensors) != man["activations_sha256"]:
        raise DataError(f"{path}: {TENSORS} does not match the manifest's activations_sha256 (the file was changed "
                        "or corrupted); extract the store again")
    if not (path / PROMPTS).is_file():
        raise DataError(f"{path}: no {PROMPTS} (the store is incomplete); extract it again")
    try:
        records = [json.loads(line) for line in (path / PROMPTS).read_text(encoding="utf-8").splitlines() if line]
    except ValueError as e:
        raise DataError(f"{path / PROMPTS}: invalid JSON line ({e})") from None
    positions = [p for p in man.get("positions", []) if p in tensors] or sorted(tensors)
    _check_manifest(path, man, {p: tensors[p] for p in positions}, len(records))
    return {p: tensors[p] for p in positions}, list(man["layers"]), records, man


def _check_manifest(path: Path, man: dict[str, Any], tensors: dict[str, torch.Tensor], n_records: int) -> None:
    """The manifest's layers, positions, ``d_model`` and prompt count agree with the tensors."""
    layers = man.get("layers")
    if not isinstance(layers, list) or not all(isinstance(x, int) for x in layers):
        raise DataError(f"{path}: the manifest's layers are missing or not integers")
    missing = [p for p in man.get("positions", []) if p not in tensors]
    if missing:
        raise DataError(f"{path}: the manifest lists position {missing[0]!r}, which {TENSORS} does not hold")
    for p, t in tensors.items():
        want = (n_records, len(layers), man.get("d_model", t.shape[-1]))
        if t.ndim != 3 or tuple(t.shape) != want:
            raise DataError(f"{path}: tensor {p!r} has shape {tuple(t.shape)} but the manifest and {PROMPTS} say "
                            f"[{want[0]} prompts, {want[1]} layers, d_model {want[2]}]; the store was edited")
