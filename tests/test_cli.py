"""The CLI parses and delegates; bad input gives one line on stderr and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


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


BAD_OPTIONS = [
    (["finetune", "--lora-r", "x"], "Invalid value for '--lora-r'"),
    (["finetune", "--data", "builtin:risky-finance", "--out", "OUT", "--save-steps", "a"], "--save-steps must be"),
    (["finetune", "sweep"], "Missing argument"),
    (["eval", "--batch-size", "q"], "Invalid value for '--batch-size'"),
    (["eval", "--run", "OUT", "--steps", "1,a"], "--steps: 'a' is not an integer"),
    (["extract", "--prompts", "builtin:em-core", "--out", "OUT", "--threads", "0"], "--threads must be positive"),
    (["extract", "--prompts", "builtin:em-core", "--out", "OUT", "--bogus"], "No such option: --bogus"),
    (["generate", "--threads", "two"], "Invalid value for '--threads'"),
    (["generate", "--dtype", "fp99"], "unknown --dtype 'fp99'"),
    (["probe", "fit", "OUT", "--out", "OUT2", "--folds", "many"], "Invalid value for '--folds'"),
    (["data", "check"], "Missing argument"),
    (["models", "info"], "Missing argument"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=[" ".join(a[:2]) for a, _ in BAD_OPTIONS])
def test_option_parse_errors_are_one_line(argv, message, tmp_path, capsys, monkeypatch):
    """A bad option value, an unknown option or a missing argument: one line on stderr, exit code 2, no traceback."""
    from emprobe.cli import main

    monkeypatch.setenv("EMPROBE_THREADS", "1")
    argv = [str(tmp_path / a) if a.startswith("OUT") else a for a in argv]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and message in err, err


def test_shared_options_on_every_model_verb():
    """One --threads/--dtype/--device/--model (one default constant) and one --questions across verbs."""
    import typer

    from emprobe.cli import app
    from emprobe.models.registry import DEFAULT_MODEL

    root = typer.main.get_command(app)
    ctx = click_context(root)
    verbs = {"eval": root.get_command(ctx, "eval"), "extract": root.get_command(ctx, "extract"),
             "generate": root.get_command(ctx, "generate"), "finetune": root.get_command(ctx, "finetune")}
    for name, cmd in verbs.items():
        opts = {o for p in cmd.params for o in p.opts}
        assert {"--threads", "--dtype", "--device", "--model"} <= opts, name
    for name in ("extract", "generate"):
        model = next(p for p in verbs[name].params if p.name == "model")
        assert model.default == DEFAULT_MODEL
    for name in ("eval", "generate"):
        assert "--questions" in {o for p in verbs[name].params for o in p.opts}
    assert "--prompts" in {o for p in verbs["extract"].params for o in p.opts}  # any prompt source, chat data too


def click_context(command):
    import click

    return click.Context(command)


def test_verbose_flag_switches_library_output(capsys):
    """Library progress bars and logs are off unless `emprobe --verbose ...`; child processes inherit it."""
    import transformers.utils.logging as tlog

    from emprobe.cli import main

    main(["--verbose", "data", "list"])
    assert os.environ["EMPROBE_VERBOSE"] == "1" and tlog.is_progress_bar_enabled()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "0"
    main(["data", "list"])
    assert os.environ["EMPROBE_VERBOSE"] == "0" and not tlog.is_progress_bar_enabled()
    assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and os.environ["TRANSFORMERS_VERBOSITY"] == "error"
    capsys.readouterr()


def test_model_load_prints_no_loading_weights_bar(tiny_model_dir, capfd):
    """Quiet by default: loading a model prints no `Loading weights` bar; --verbose brings it back."""
    from emprobe.models import load_model
    from emprobe.verbosity import set_verbose

    try:
        set_verbose(True)
        load_model(str(tiny_model_dir), log=lambda m: None)
        loud = capfd.readouterr().err
        set_verbose(False)
        load_model(str(tiny_model_dir), log=lambda m: None)
        quiet = capfd.readouterr().err
    finally:
        set_verbose(False)
    assert "Loading weights" in loud and "Loading weights" not in quiet


def test_help_texts_have_no_square_brackets():
    """typer renders help as rich markup, which silently drops `[...]` (defaults written that way vanished from
    --help); defaults go in show_default instead."""
    import typer

    from emprobe.cli import app

    root = typer.main.get_command(app)
    ctx = click_context(root)
    bad = []
    for verb in ("models", "data", "finetune", "eval", "extract", "probe", "generate"):
        cmd = root.get_command(ctx, verb)
        commands = [cmd, *getattr(cmd, "commands", {}).values()]
        bad += [f"{verb} {o.name}" for c in commands for o in c.params if "[" in (getattr(o, "help", None) or "")]
    assert not bad
