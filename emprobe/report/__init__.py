"""Reports: render a study's ``summary.json`` as one self-contained ``report.html`` (verdicts first)."""

from __future__ import annotations

from pathlib import Path

from emprobe.report.html import render_report


def render_summary(out: str | Path) -> Path:
    """Re-render ``out/report.html`` from ``out/summary.json``."""
    from emprobe.errors import DataError
    from emprobe.io import read_json

    path = Path(out) / "summary.json"
    if not path.is_file():
        raise DataError(f"{out}: no summary.json (run `emprobe demo --out {out}` or `emprobe study` first)")
    return render_report(read_json(path), out)


__all__ = ["render_report", "render_summary"]
