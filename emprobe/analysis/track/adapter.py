"""The LoRA adapter's own trajectory through a run's checkpoints.

Per checkpoint and module: Frobenius norms of A and B, the cosine of B (flattened) to the final
checkpoint's B, and the *local cosine* phase-transition score of model-organisms-for-EM: the cosine between
consecutive updates of B, ``cos(B_t − B_{t−1}, B_{t+1} − B_t)`` over the checkpoint sequence. It stays near
1 while B grows along a fixed direction and dips where the direction rotates (a phase transition).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from emprobe.analysis.stats.subspace import cosine
from emprobe.errors import DataError


def load_lora_factors(adapter_dir: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """``{module: {"A": [r, in], "B": [out, r]}}`` from a peft adapter's safetensors."""
    from safetensors.numpy import load_file

    path = Path(adapter_dir) / "adapter_model.safetensors"
    if not path.is_file():
        raise DataError(f"{adapter_dir}: no adapter_model.safetensors (not a LoRA checkpoint)")
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in load_file(str(path)).items():
        for tag, name in ((".lora_A.", "A"), (".lora_B.", "B")):
            if tag in key:
                module = key.split(tag)[0].removeprefix("base_model.model.")
                out.setdefault(module, {})[name] = value.astype(np.float64)
    if not out:
        raise DataError(f"{adapter_dir}: adapter holds no LoRA A/B weights")
    return out


def adapter_trajectory(checkpoints: list[tuple[int, str | Path]]) -> pd.DataFrame:
    """Tidy table (step, module, norm_A, norm_B, cos_B_to_final, local_cos_B) over ``(step, dir)`` pairs.

    The module ``"<all>"`` row concatenates every module's B, for a whole-adapter view.
    """
    if len(checkpoints) < 2:
        raise DataError("adapter trajectory needs at least 2 checkpoints")
    ckpts = sorted(checkpoints, key=lambda c: c[0])
    factors = [load_lora_factors(d) for _, d in ckpts]
    modules = sorted(factors[-1])
    rows = []
    for module in modules + ["<all>"]:
        if module == "<all>":
            bs = [np.concatenate([f[m]["B"].ravel() for m in modules]) for f in factors]
            as_ = [np.concatenate([f[m]["A"].ravel() for m in modules]) for f in factors]
        else:
            bs = [f[module]["B"].ravel() for f in factors]
            as_ = [f[module]["A"].ravel() for f in factors]
        for i, (step, _) in enumerate(ckpts):
            local = np.nan
            if 0 < i < len(ckpts) - 1:
                local = cosine(bs[i] - bs[i - 1], bs[i + 1] - bs[i])
            rows.append({"step": step, "module": module, "norm_A": float(np.linalg.norm(as_[i])),
                         "norm_B": float(np.linalg.norm(bs[i])), "cos_B_to_final": cosine(bs[i], bs[-1]),
                         "local_cos_B": local})
    return pd.DataFrame(rows)
