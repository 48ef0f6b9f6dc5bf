"""Options every verb shares, defined once: the model, the question set, threads, dtype/device, output.

- ``--model``: defaults to :data:`emprobe.models.DEFAULT_MODEL` (one constant, never re-typed);
- ``--questions``: the one name for a question set across verbs (``--prompts`` / ``--eval`` still work as
  hidden aliases, rewritten in :func:`rewrite_aliases` before parsing);
- ``--threads``: torch CPU threads; default ``$EMPROBE_THREADS`` or every core. Two emprobe processes that
  each take every core oversubscribe the machine (measured: 6-10x slower each on 2 cores), so split the
  cores between them (``--threads 1`` each, or ``EMPROBE_THREADS=1``);
- ``--dtype`` / ``--device``: how to load the model (``fp32`` | ``bf16`` | ``fp16``; ``cpu`` | ``cuda`` | ``auto``).
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional

import typer

from emprobe.errors import ConfigError
from emprobe.outdir import check_out

#: verbs whose question set was called ``--prompts`` or ``--eval`` before ``--questions`` (extract keeps
#: ``--prompts``: it takes any prompt source, chat data included)
QUESTION_ALIASES = {"--prompts": "--questions", "--eval": "--questions"}
ALIAS_VERBS = {"track", "patch", "steer", "ablate", "overlap", "monitor", "dynamics", "eval"}


def default_model() -> str:
    from emprobe.models.registry import DEFAULT_MODEL

    return DEFAULT_MODEL


def model_option(help: str = "model: a built-in alias, hub id or local directory") -> Any:
    return typer.Option(default_model(), "--model", "-m", help=help)


def questions_option(default: str = "builtin:em-core",
                     help: str = "question set: builtin:NAME or a Betley-format YAML") -> Any:
    return typer.Option(default, "--questions", "-q", help=help)


def threads_option() -> Any:
    return typer.Option(None, "--threads", help="torch CPU threads (default $EMPROBE_THREADS or every core; "
                                                "split the cores between concurrent emprobe processes)")


def dtype_option() -> Any:
    return typer.Option(None, "--dtype", help="weights dtype: fp32 | bf16 | fp16 (default: fp32 on CPU)")


def device_option() -> Any:
    return typer.Option(None, "--device", help="cpu | cuda | auto (auto = device_map='auto' across GPUs)")


def default_threads() -> int | None:
    """``$EMPROBE_THREADS`` when set (a positive integer), else ``None`` (torch's default: every core)."""
    raw = os.environ.get("EMPROBE_THREADS")
    if not raw:
        return None
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(f"EMPROBE_THREADS must be a positive integer, got {raw!r}") from None
    if n < 1:
        raise ConfigError(f"EMPROBE_THREADS must be a positive integer, got {raw!r}")
    return n


def apply_threads(threads: Optional[int]) -> None:
    """Set torch's CPU threads from ``--threads`` or ``$EMPROBE_THREADS``."""
    n = threads if threads is not None else default_threads()
    if n is not None:
        if n < 1:
            raise ConfigError(f"--threads must be positive, got {n}")
        import torch  # after every argument check of the verb: torch takes a second or more to import

        torch.set_num_threads(n)


def _numbers(value: str, what: str, cast: type, kind: str, example: str) -> list:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        try:
            out.append(cast(item))
        except ValueError:
            raise ConfigError(f"{what}: {item!r} is not {kind} (expected e.g. {example})") from None
    if not out:
        raise ConfigError(f"{what}: nothing given (expected e.g. {example})")
    return out


def floats(value: str, what: str = "value") -> list[float]:
    """``"-1,0,1"`` -> floats; a bad item is a one-line error naming it."""
    return _numbers(value, what, float, "a number", "-1,0,1")


def ints(value: str, what: str = "value") -> list[int]:
    """``"1,2,4"`` -> ints; a bad item is a one-line error naming it."""
    return _numbers(value, what, int, "an integer", "1,2,4")


def rewrite_aliases(argv: list[str]) -> list[str]:
    """Old option names of the question set (``--prompts``, ``--eval``) -> ``--questions`` for the verbs that
    renamed it (the old names keep working but are not shown in ``--help``)."""
    verbs = [a for a in argv if not a.startswith("-")][:1]
    if not verbs or verbs[0] not in ALIAS_VERBS:
        return argv
    out = []
    for a in argv:
        name, eq, val = a.partition("=")
        out.append(QUESTION_ALIASES.get(name, name) + eq + val if name in QUESTION_ALIASES else a)
    return out


def check_threads(threads: Optional[int]) -> None:
    """``--threads`` (or ``$EMPROBE_THREADS``) checked without importing torch."""
    n = threads if threads is not None else default_threads()
    if n is not None and n < 1:
        raise ConfigError(f"--threads must be positive, got {n}")


def overwrite_option(flag: str = "--overwrite") -> Any:
    return typer.Option(False, flag, help="replace an --out that emprobe wrote before (a file, or a directory "
                                          "emprobe did not write, is never replaced)")


def guard_out(out: Any, overwrite: bool = False, reuse: Any = False) -> None:
    """The output policy (:mod:`emprobe.outdir`) applied to ``--out`` before any work starts."""
    if out is not None:
        check_out(out, overwrite=overwrite, reuse=reuse)


#: library parameter -> the option (or argument) that sets it, where the names differ; by command path
PARAM_OPTIONS: dict[str, dict[str, str]] = {
    "": {"spec": "--model", "path": "--out"},
    "eval": {"overwrite": "--force", "source": "--questions", "judge": "--judge-model or --judge-local"},
    "generate": {"source": "--questions"},
    "extract": {"padding_side": "--padding", "source": "--prompts"},
    "probe fit": {"n_splits": "--folds", "n_random": "--random", "path": "STORE"},
    "finetune": {"source": "--data"},
    "track": {"run": "RUN_DIR", "directions": "--directions"},
    "study": {"force": "--force", "address": "--ray-address"},
    "finetune sweep": {"address": "--ray-address"},
    "demo": {"force": "--force"},
    "diff": {"base": "--model"},
}


def _command(argv: list[str]):
    """The click command ``argv`` invokes and its path (``"probe fit"``); ``(None, "")`` if none."""
    import typer.main

    from emprobe.cli import app

    cmd, path = typer.main.get_command(app), []
    for tok in argv:
        sub = getattr(cmd, "commands", {}).get(tok) if not tok.startswith("-") else None
        if sub is not None:
            cmd, path = sub, path + [tok]
        elif not tok.startswith("-") and path:
            break
    return (cmd if path else None), " ".join(path)


def cli_message(message: str, argv: list[str]) -> str:
    """A library message (parameters in backticks) with each parameter shown as the option that sets it."""
    if "`" not in message:
        return message
    try:
        cmd, path = _command(argv)
    except Exception:  # never let the message rewrite hide the message
        cmd, path = None, ""
    params = {p.name: p for p in getattr(cmd, "params", [])}
    given = {a.partition("=")[0] for a in argv}
    aliases = {**PARAM_OPTIONS[""], **PARAM_OPTIONS.get(path, {})}

    def flag(m: re.Match) -> str:
        name = aliases.get(m.group(1), m.group(1))
        p = params.get(name)
        if p is not None:
            if p.param_type_name == "argument":
                return (p.metavar or p.name or name).upper()
            return next((o for o in p.opts if o in given and o.startswith("--")), p.opts[0])  # as the user typed it
        if name.startswith("-") or name.isupper() or cmd is not None:
            return name  # a library-only parameter (no option sets it) keeps its name
        return f"--{name.replace('_', '-')}"

    message = re.sub(r"`([A-Za-z_][A-Za-z0-9_]*)`", flag, message)
    return re.sub(r"`([A-Za-z_][\w.\[\]]*)`", r"\1", message)  # a setting in a file (`training.steps`)


def print_result(result, out, overwrite: bool = False) -> None:
    """Save an analysis result to ``out`` and print its findings (the CLI's only output for analyses)."""
    from rich.console import Console

    console = Console()
    path = result.save(out, overwrite=overwrite)
    for line in result.findings():
        console.print(f"• {line}")
    console.print(f"[dim]wrote {path}/ (table.parquet, plot.png, summary.json)[/]")
