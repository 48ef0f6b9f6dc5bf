"""CLI verbs of the finetune stage (filled in by the finetune issue)."""

from __future__ import annotations

import typer


def register(root: typer.Typer) -> None:
    """Add this stage's verbs to the root app."""
