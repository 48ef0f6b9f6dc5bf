"""Helpers shared by the stages: save a result, return its report section (``Result.to_section``); a claim's
section also says the claim as the study tested it and its smallest effect of interest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emprobe.result import Result, save_figure
from emprobe.studies.context import StudyContext


def result_section(ctx: StudyContext, result: Result, d: Path, **extra: Any) -> dict[str, Any]:
    """Save ``result`` under ``d/result`` and return its section (plot path relative to the study's root)."""
    out = result.save(d / "result")
    plots = [ctx.rel(out / "plot.png")] if (out / "plot.png").is_file() else []
    return result.to_section(plots=plots, **extra)


def claim_section(ctx: StudyContext, result: Result, d: Path, tested: str, sesoi: str,
                  notes: list[str] = ()) -> dict[str, Any]:
    """:func:`result_section` of a claim's stage, its verdict carrying ``tested`` (the claim as this study tests it)
    and ``sesoi`` (its smallest effect of interest, from the config's ``claims``, declared before looking);
    ``notes`` are findings the stage adds (e.g. a control it could not form)."""
    sec = result_section(ctx, result, d)
    if sec.get("verdict"):
        sec["verdict"].update(tested=tested, sesoi=sesoi)
    sec["findings"] = [*sec["findings"], *notes]
    return sec


def plot_section(ctx: StudyContext, result: Result, d: Path, **extra: Any) -> dict[str, Any]:
    """``result``'s section with its plot drawn to ``d/plot.png`` (for stages that write their own tables)."""
    fig = result.plot()
    plots = [ctx.rel(save_figure(fig, d / "plot.png"))] if fig is not None else []
    return result.to_section(plots=plots, **extra)


def probe_layers(n_layers: int) -> list[int]:
    """Layers at a quarter, half and three quarters of the depth (fixed a priori, not chosen on the outcome)."""
    return sorted({round(f * (n_layers - 1)) for f in (0.25, 0.5, 0.75)})
