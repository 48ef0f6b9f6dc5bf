"""Helpers shared by the stages that wrap one analysis verb: save its result, return its report section."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def result_section(ctx, result, d: Path, **extra: Any) -> dict:
    """Save ``result`` under ``d/result`` and return its section (plot path relative to the study's root)."""
    out = result.save(d / "result")
    plots = [ctx.rel(out / "plot.png")] if (out / "plot.png").is_file() else []
    return result.to_section(plots=plots, **extra)


def probe_layers(n_layers: int) -> list[int]:
    """Layers at a quarter, half and three quarters of the depth (fixed a priori, not chosen on the outcome)."""
    return sorted({round(f * (n_layers - 1)) for f in (0.25, 0.5, 0.75)})
