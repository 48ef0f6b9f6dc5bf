"""Shared fixtures: real packaged models (loaded once per session) and a tiny random Llama."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
EXTERNAL = REPO.parent / "shared" / "external"

torch.set_num_threads(int(os.environ.get("EMPROBE_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def external() -> Path:
    """Third-party data beside the repo (../shared/external); read-only, never copied into the repo."""
    if not EXTERNAL.is_dir():
        pytest.fail(f"missing {EXTERNAL}: the shared third-party test data must sit beside the repo")
    return EXTERNAL


@pytest.fixture(scope="session")
def smollm2():
    """The packaged SmolLM2-135M-Instruct (dequantized + cached on first use)."""
    from emprobe.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def gemma():
    """The packaged Gemma-3-270m pre-trained base model."""
    from emprobe.models import load_model

    return load_model("gemma-3-270m")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, smollm2) -> Path:
    """A tiny random Llama (2 layers, d_model 64) with SmolLM2's tokenizer, saved as safetensors."""
    from emprobe.models.testing import save_tiny_llama

    return save_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny-llama", smollm2.tokenizer)
