"""CLI verbs of the probes stage (filled in by the probes issue)."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this stage's verbs to the root app."""
