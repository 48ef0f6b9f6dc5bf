"""CLI verbs of the evaluate stage (filled in by the evaluate issue)."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this stage's verbs to the root app."""
