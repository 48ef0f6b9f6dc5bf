"""Small, fast fine-tuning settings for tests and examples.

Pair them with a tiny random model from :func:`emprobe.models.testing.save_tiny_llama`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emprobe.finetuning.config import FinetuneConfig

#: a few short steps on a few short examples, single-threaded, no progress bar
TINY_SETTINGS: dict[str, Any] = dict(
    data="builtin:risky-finance", max_steps=4, save_steps=[0, 2, 4], batch_size=2, max_length=96,
    val_max_examples=4, lr=1e-2, lora_r=4, lora_alpha=8, threads=1, progress=False,
)


def tiny_config(model: str | Path, out: str | Path, **overrides: Any) -> FinetuneConfig:
    """A :class:`FinetuneConfig` with :data:`TINY_SETTINGS` for ``model`` writing to ``out``."""
    return FinetuneConfig.from_dict({**TINY_SETTINGS, "model": str(model), "out": str(out), **overrides})
