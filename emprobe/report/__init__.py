"""Reports: the ``emprobe demo`` study (cached stages) and its ``summary.json`` + self-contained ``report.html``."""

from __future__ import annotations

from pathlib import Path

from emprobe.report.demo import PRESETS, Demo, DemoConfig, demo
from emprobe.report.html import render_report
from emprobe.report.stages import Pipeline, Stage


def render_summary(out: str | Path) -> Path:
    """Re-render ``out/report.html`` from ``out/summary.json``."""
    from emprobe.errors import DataError
    from emprobe.io import read_json

    path = Path(out) / "summary.json"
    if not path.is_file():
        raise DataError(f"{out}: no summary.json (run `emprobe demo --out {out}` first)")
    return render_report(read_json(path), out)


__all__ = ["PRESETS", "Demo", "DemoConfig", "Pipeline", "Stage", "demo", "render_report", "render_summary"]
