"""Reports: render a study's ``summary.json`` as one self-contained ``report.html`` (verdicts first)."""

from __future__ import annotations

from pathlib import Path

from emprobe.errors import DataError
from emprobe.report.html import render_report


def render_summary(out: str | Path) -> Path:
    """Re-render ``out/report.html`` from ``out/summary.json`` (checked first: a missing, truncated or foreign
    summary is a one-line :class:`~emprobe.errors.DataError` and nothing is written)."""
    from emprobe.io import read_json
    from emprobe.report.html import check_summary
    from emprobe.validate import existing_dir

    existing_dir(out, "out", "study output")
    path = Path(out) / "summary.json"
    if not path.is_file():
        raise DataError(f"{out}: no summary.json (run `emprobe demo --out {out}` or `emprobe study` first)")
    return render_report(check_summary(read_json(path), path), out)


__all__ = ["render_report", "render_summary"]
