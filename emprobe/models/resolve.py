"""Where a model name points: a built-in alias, a local directory, or a Hugging Face hub id; and where it goes.

A name that is neither an alias nor a directory is tried as a hub id only when that can work: it is in the
local hub cache (then it loads with ``local_files_only``), or the hub is online and reachable (checked with
one TCP connect bounded at a few seconds). Otherwise it fails at once with one line listing the aliases,
instead of waiting on network retries.

Placement: ``device`` is ``cpu``, ``cuda``/``cuda:N``, ``mps``, ``auto`` (accelerate's
``device_map="auto"``: spread over the available GPUs, then CPU) or an explicit ``device_map`` dict
(module name -> ``cuda:N`` / ``cpu`` / ``disk``; disk-offloaded weights go to a temporary folder removed at exit).
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from emprobe.errors import ConfigError, ModelError
from emprobe.models.registry import BUILTIN_MODELS

PROBE_TIMEOUT_S = 3.0
_TRUE = {"1", "on", "yes", "true"}


def hub_offline() -> bool:
    """True when the user switched the hub off (``HF_HUB_OFFLINE`` / ``TRANSFORMERS_OFFLINE``)."""
    return any(os.environ.get(k, "").strip().lower() in _TRUE for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def in_hub_cache(repo_id: str, revision: str | None = None) -> bool:
    """True when ``repo_id``'s ``config.json`` is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
    except Exception:  # invalid repo ids raise validation errors
        return False


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """One TCP connect to the hub endpoint (or the HTTPS proxy), bounded by ``timeout`` (DNS included)."""
    proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
    try:
        from huggingface_hub import constants

        endpoint = constants.ENDPOINT
    except Exception:
        endpoint = "https://huggingface.co"
    url = urlparse(proxy if proxy else endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    ok: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            ok.append(True)
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # getaddrinfo has no timeout of its own
    t.start()
    t.join(timeout)
    return bool(ok)


def _unknown(name: str, why: str) -> ModelError:
    return ModelError(f"unknown model {name!r}: not a built-in alias ({', '.join(BUILTIN_MODELS)}), not a directory, "
                      f"and {why}; use an alias or point `spec` at a model directory (e.g. ./path/to/model)")


def resolve(spec, log=print) -> tuple[str, str, bool]:
    """``(path_or_id, kind, local_files_only)`` with kind ``builtin``, ``local`` or ``hub``."""
    from emprobe.models import cache

    if spec.is_builtin:
        return str(cache.prepare(spec.name, log=log)), "builtin", True
    p = Path(spec.name).expanduser()
    if p.is_dir():
        return str(p.resolve()), "local", True
    if p.exists() or spec.name.startswith((".", "/", "~")):
        raise ModelError(f"model path {spec.name!r} is not a directory")
    if in_hub_cache(spec.name, spec.revision):
        return spec.name, "hub", True
    if hub_offline():
        raise _unknown(spec.name, "not in the local hub cache while the hub is switched off (HF_HUB_OFFLINE)")
    if not hub_reachable():
        raise _unknown(spec.name, "not in the local hub cache, and the Hugging Face hub is unreachable")
    return spec.name, "hub", False


def placement(device: str | dict | None) -> tuple[dict[str, Any], str | None]:
    """``(from_pretrained kwargs, device to move to afterwards or None)`` for a ``device`` option."""
    if isinstance(device, dict):
        kw: dict[str, Any] = {"device_map": dict(device)}
        if "disk" in {str(v) for v in device.values()}:  # offloaded weights live in a folder for the process
            kw["offload_folder"] = tempfile.mkdtemp(prefix="emprobe-offload-")
            atexit.register(shutil.rmtree, kw["offload_folder"], True)
        return kw, None
    d = str(device or "cpu").strip().lower()
    if d == "auto":
        return {"device_map": "auto"}, None
    try:
        dev = torch.device(d)
    except RuntimeError:
        raise ConfigError(f"unknown device {device!r}; use cpu, cuda, cuda:N, mps or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {device!r} requested but no CUDA GPU is visible to torch "
                          f"{torch.__version__} (use `device` cpu)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r} requested but MPS is not available (use `device` cpu)")
    if dev.type == "cpu":
        return {}, "cpu"
    return {"device_map": d}, None  # weights load straight onto the accelerator


def describe_placement(model: torch.nn.Module) -> str:
    """``cpu``, ``cuda:0`` or, for a dispatched model, a summary of its ``hf_device_map``."""
    dmap = getattr(model, "hf_device_map", None)
    devices = sorted({str(v) for v in dmap.values()}) if dmap else []
    if len(devices) > 1:
        return f"device_map over {', '.join(devices)} ({len(dmap)} modules)"
    return str(next(model.parameters()).device)
