"""The ``emprobe`` command line: one thin typer app. Each stage registers its verbs from its own module.

The CLI only parses options and calls the Python API; any :class:`~emprobe.errors.EmprobeError` is
printed as one line (``error: ...``) with exit code 2.
"""

from __future__ import annotations

import sys

import typer

from emprobe.cli import (analysis, causal, data, diffing, evaluate, external, finetune, mitigations, models, probes,
                         report)
from emprobe.cli.common import cli_message, rewrite_aliases
from emprobe.errors import EmprobeError

app = typer.Typer(
    name="emprobe",
    help="Study emergent misalignment mechanistically: finetune, evaluate, probe, analyse.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", help="show the libraries' progress bars and logs "
                                                                "(transformers, huggingface_hub, datasets)")) -> None:
    from emprobe.verbosity import set_verbose

    set_verbose(verbose)


# Each stage module exposes register(root): it adds its verbs / sub-apps to the root app.
for _stage in (models, data, finetune, evaluate, probes, analysis, external, causal, diffing, mitigations, report):
    _stage.register(app)


def _click_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(ClickException, Abort) classes of click and of typer's bundled copy of click, where present."""
    import importlib

    errors, aborts = [], []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            mod = importlib.import_module(name)
        except ImportError:
            continue
        errors.append(mod.ClickException)
        if hasattr(mod, "Abort"):
            aborts.append(mod.Abort)
    return tuple(errors), tuple(aborts)


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns normally on success (so tests and scripts can call it).

    Emprobe errors become one line on stderr with exit code 2 (parameter names shown as the options that set
    them); usage errors print typer's message.
    """
    args = rewrite_aliases(list(sys.argv[1:] if argv is None else argv))
    try:
        rv = app(args=args, standalone_mode=False)
    except EmprobeError as e:
        print(f"error: {cli_message(str(e), args)}", file=sys.stderr)
        raise SystemExit(2) from None
    except Exception as e:
        errors, aborts = _click_errors()
        if isinstance(e, errors):
            _show_one_line(e)
            raise SystemExit(e.exit_code) from None
        if isinstance(e, aborts):
            print("aborted", file=sys.stderr)
            raise SystemExit(130) from None
        raise
    if isinstance(rv, int) and rv:
        raise SystemExit(rv)
    return 0


def _show_one_line(e: Exception) -> None:
    """A usage error (bad option value, unknown option, missing argument) as one line naming the verb's help;
    a bare verb (``emprobe finetune``) still shows its help."""
    if type(e).__name__ == "NoArgsIsHelpError" or not hasattr(e, "format_message"):
        e.show()  # type: ignore[attr-defined]
        return
    ctx = getattr(e, "ctx", None)
    where = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    message = " ".join(str(e.format_message()).split())
    print(f"error: {message}{where}", file=sys.stderr)
