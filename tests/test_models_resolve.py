"""Model names that are neither aliases nor directories fail fast, offline, in one line; bad dtype/device too."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from emprobe.errors import ConfigError, ModelError
from emprobe.models import BUILTIN_MODELS, load_model


def _check_unknown(msg: str, name: str) -> None:
    assert "\n" not in msg
    assert f"unknown model {name!r}" in msg
    assert all(alias in msg for alias in BUILTIN_MODELS)
    assert "at a model directory (e.g. ./path/to/model)" in msg
    assert "point `spec`" in msg or "point --model" in msg  # the parameter; the command line names the option


def test_unknown_name_with_the_hub_switched_off(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(ModelError) as e:
        load_model("no-such-model", log=lambda *a: None)
    assert time.perf_counter() - t0 < 10  # generous sanity bound (it used to wait ~50 s on retries)
    _check_unknown(str(e.value), "no-such-model")
    assert "HF_HUB_OFFLINE" in str(e.value)


def test_unknown_name_with_the_hub_unreachable(monkeypatch):
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(ModelError) as e:
        load_model("some-org/no-such-model", log=lambda *a: None)
    _check_unknown(str(e.value), "some-org/no-such-model")
    assert "unreachable" in str(e.value)


def test_a_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(ModelError, match="is not a directory"):
        load_model(str(tmp_path / "nope"), log=lambda *a: None)


def test_cli_prints_one_line_and_writes_nothing(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    out = tmp_path / "acts"
    r = subprocess.run([sys.executable, "-m", "emprobe", "extract", "--model", "no-such-model", "--prompts",
                        "builtin:em-core", "--out", str(out)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    lines = [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]
    assert len(lines) == 1, lines
    _check_unknown(lines[0].split(": ", 1)[1], "no-such-model")
    assert not out.exists()


@pytest.mark.parametrize("kw, match", [
    ({"dtype": "fp8"}, "unknown `dtype`"),
    ({"device": "warp9"}, "unknown device"),
])
def test_bad_dtype_or_device_is_refused_before_loading(kw, match):
    with pytest.raises(ConfigError, match=match):
        load_model("no-such-model", log=lambda *a: None, **kw)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu_says_so():
    with pytest.raises(ConfigError, match="no CUDA GPU") as e:
        load_model("smollm2-135m-instruct", device="cuda", log=lambda *a: None)
    assert "\n" not in str(e.value)
