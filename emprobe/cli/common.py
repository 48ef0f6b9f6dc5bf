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
from typing import Any, Optional

import typer

from emprobe.errors import ConfigError

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
        import torch

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


def print_result(result, out) -> None:
    """Save an analysis result to ``out`` and print its findings (the CLI's only output for analyses)."""
    from rich.console import Console

    console = Console()
    path = result.save(out)
    for line in result.findings():
        console.print(f"• {line}")
    console.print(f"[dim]wrote {path}/ (table.parquet, plot.png, summary.json)[/]")
