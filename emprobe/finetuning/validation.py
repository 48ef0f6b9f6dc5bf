"""Held-out validation of a fine-tuning run: per-example response losses, the loss with its CI, and step 0 once.

Every checkpoint records the token-weighted mean cross-entropy on the run's held-out examples (``val_loss``),
a 95 % bootstrap CI over those examples (``val_loss_ci``), and each example's summed loss and token count
(``val_example_losses``), so that any later comparison can be paired by example. Checkpoints after step 0 also
record the change since step 0 with its paired CI (``val_loss_change``, ``val_loss_change_ci``): the examples
are the same at every checkpoint, so how far training has moved the loss is known far more precisely than the
loss itself (most of the spread between examples is how hard each one is, which does not change).

Step 0 is the base model (a LoRA adapter starts with ``B = 0``), the same for every run of one dataset: its
validation is computed once per process and dataset (:class:`StepZeroCache`) instead of once per run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emprobe.finetuning.dataset import TokenizedDataset, example_losses

#: bootstrap resamples for the validation-loss CIs (seeded: the same data give the same CI)
N_BOOT = 2000
#: the fewest held-out examples :func:`split_size` keeps
MIN_EXAMPLES = 8


def _boot_index(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(N_BOOT, n))


def loss_ci(sums: np.ndarray, counts: np.ndarray, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI (over examples) of the token-weighted mean loss ``sum(sums) / sum(counts)``."""
    if len(sums) < 2:
        return float("nan"), float("nan")
    idx = _boot_index(len(sums), seed)
    boots = sums[idx].sum(1) / np.maximum(counts[idx].sum(1), 1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def change_ci(sums: np.ndarray, counts: np.ndarray, sums0: np.ndarray, counts0: np.ndarray,
              level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Paired bootstrap CI of ``loss - loss at step 0`` (the same examples resampled for both)."""
    if len(sums) < 2:
        return float("nan"), float("nan")
    idx = _boot_index(len(sums), seed)
    now = sums[idx].sum(1) / np.maximum(counts[idx].sum(1), 1)
    then = sums0[idx].sum(1) / np.maximum(counts0[idx].sum(1), 1)
    lo, hi = np.quantile(now - then, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Validation:
    """One checkpoint's validation: per-example loss sums and token counts."""

    sums: np.ndarray
    counts: np.ndarray

    @property
    def loss(self) -> float:
        return float(self.sums.sum() / max(int(self.counts.sum()), 1))

    def info(self, step0: "Validation | None" = None) -> dict[str, Any]:
        """The ``checkpoint.json`` fields (the change since ``step0`` when given, paired by example)."""
        out: dict[str, Any] = {
            "val_loss": self.loss, "val_tokens": int(self.counts.sum()), "val_examples": len(self.sums),
            "val_loss_ci": list(loss_ci(self.sums, self.counts)),
            "val_example_losses": [[round(float(s), 5), int(n)] for s, n in zip(self.sums, self.counts)],
        }
        if step0 is not None and len(step0.sums) == len(self.sums):
            out["val_loss_change"] = self.loss - step0.loss
            out["val_loss_change_ci"] = list(change_ci(self.sums, self.counts, step0.sums, step0.counts))
        return out

    def head(self, n: int) -> "Validation":
        """The first ``n`` examples."""
        return Validation(self.sums[:n], self.counts[:n])

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> "Validation | None":
        rows = info.get("val_example_losses")
        if not rows:
            return None
        arr = np.asarray(rows, dtype=float)
        return cls(arr[:, 0], arr[:, 1].astype(np.int64))


def split_size(pool: Validation, target: float | None, minimum: int = MIN_EXAMPLES) -> int:
    """How many of the held-out examples (in their seeded order) to validate on: the fewest ``n`` whose expected
    95 % CI half-width of the loss, ``1.96 * sd / sqrt(n)`` with ``sd`` the spread of the per-example residuals
    of the token-weighted mean (delta method) over the whole ``pool`` at step 0, is at most ``target``; at least
    ``minimum``, at most the pool. ``target=None``: the whole pool."""
    n = len(pool.sums)
    if target is None or n <= minimum:
        return n
    resid = (pool.sums - pool.loss * pool.counts) / pool.counts.mean()
    need = math.ceil((1.96 * float(resid.std(ddof=1)) / target) ** 2)
    return int(min(n, max(minimum, need)))


def validate(model: torch.nn.Module, data: TokenizedDataset, batch_size: int, pad_id: int) -> Validation:
    return Validation(*example_losses(model, data, batch_size, pad_id))


class StepZeroCache:
    """Step-0 validations, keyed by what determines them (base model, data, split, length): every run of one
    dataset starts from the same base model, so its step 0 is validated once. Kept in this process, and shared
    with other processes through the directory named by ``EMPROBE_VAL_CACHE`` when it is set (the local
    executor's workers)."""

    _store: dict[str, Validation] = {}

    @staticmethod
    def _file(key: str):
        import os
        from pathlib import Path

        d = os.environ.get("EMPROBE_VAL_CACHE", "").strip()
        return Path(d) / f"step0-{key}.json" if d and Path(d).is_dir() else None

    @classmethod
    def get(cls, key: str) -> Validation | None:
        if key not in cls._store and (f := cls._file(key)) is not None and f.is_file():
            from emprobe.io import read_json

            v = Validation.from_info(read_json(f))
            if v is not None:
                cls._store[key] = v
        return cls._store.get(key)

    @classmethod
    def put(cls, key: str, value: Validation) -> None:
        cls._store[key] = value
        if (f := cls._file(key)) is not None:
            from emprobe.io import write_json

            write_json(f, {"val_example_losses": [[float(s), int(n)] for s, n in zip(value.sums, value.counts)]})
