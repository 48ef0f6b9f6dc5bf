"""Helpers shared by the tests/test_probes_*.py files."""

from __future__ import annotations


def run_cli(args: list[str]) -> int:
    """``emprobe ARGS`` in-process; returns the exit code (typer's standalone mode exits even on success)."""
    from emprobe.cli import main

    try:
        main(args)
    except SystemExit as e:
        return int(e.code or 0)
    return 0
