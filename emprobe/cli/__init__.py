"""The ``emprobe`` command line: one thin typer app. Each stage registers its verbs from its own module.

The CLI only parses options and calls the Python API; any :class:`~emprobe.errors.EmprobeError` is
printed as one line (``error: ...``) with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from emprobe.cli import analysis, data, evaluate, finetune, models, probes
from emprobe.errors import EmprobeError

app = typer.Typer(
    name="emprobe",
    help="Study emergent misalignment mechanistically: finetune, evaluate, probe, analyse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Each stage module exposes register(root): it adds its verbs / sub-apps to the root app.
for _stage in (models, data, finetune, evaluate, probes, analysis):
    _stage.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app, turning emprobe errors into one-line messages (exit code 2).

    Usage errors and ``--help`` are handled by typer itself (standalone mode).
    """
    try:
        app(args=argv)
    except EmprobeError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
