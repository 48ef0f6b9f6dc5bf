"""The CLI parses and delegates; bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "emprobe", *args], capture_output=True, text=True, timeout=300, env=env)


def test_models_list_and_data_list():
    r = run("models", "list")
    assert r.returncode == 0 and "smollm2-135m-instruct" in r.stdout and "gemma-3-270m" in r.stdout
    r = run("data", "list")
    assert r.returncode == 0 and "builtin:em-core" in r.stdout


def test_data_check_bad_file_one_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}\n{oops\n')
    r = run("data", "check", str(p))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and f"{p}:2: invalid JSON" in r.stderr


def test_data_check_builtin():
    r = run("data", "check", "builtin:em-core")
    assert r.returncode == 0 and "questions" in r.stdout


def test_models_info_prints_facts(smollm2):
    r = run("models", "info", "smollm2-135m-instruct")
    assert r.returncode == 0, r.stderr
    for needle in ("n_layers", "30", "d_model", "576", "n_parameters", "chat_template_source", "tokenizer"):
        assert needle in r.stdout
