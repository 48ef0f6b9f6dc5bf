"""Typed analysis results: numbers and tables only, rendered on demand.

Every analysis verb returns a frozen dataclass that subclasses :class:`Result`. A result holds the measured
numbers and tidy tables, nothing pre-rendered; prose, figures, files and report sections come from methods:

- ``findings()`` — sentences with their numbers; when a control explains the effect away (or the effect has
  the wrong sign) the first sentence says so;
- ``verdict()`` — an optional :class:`Verdict` (claim, supported / not supported / inconclusive, number,
  control, uncertainty);
- ``numbers()`` — the flat scalar figures (what ``summary.json`` and report sections carry);
- ``tables()`` — ``{"table": main, **extras}``;
- ``plot(ax=None)`` — a matplotlib figure (drawn into ``ax`` when given);
- ``save(out, overwrite=False)`` — ``OUT/table.parquet`` (+ ``<name>.parquet`` per extra table), ``plot.png``,
  ``summary.json``, ``summary.txt``, written atomically (emprobe's own earlier output is replaced only with
  ``overwrite``; a file or a foreign directory never is, see :mod:`emprobe.outdir`);
- ``to_section()`` — the dict a study/demo report renders.

On disk (one directory, written atomically)::

    OUT/
      table.parquet        the tidy main table (plus any extra tables as <name>.parquet)
      plot.png             the figure
      summary.json         findings, verdict, numbers, control, uncertainty, inputs, emprobe version
      summary.txt          the findings as plain text
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from emprobe.io import atomic_dir, json_safe, manifest, write_json

VERDICTS = ("supported", "not supported", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """One claim tested: its verdict, the number that decides it, the control and the uncertainty."""

    claim: str
    verdict: str  # one of VERDICTS
    number: str
    control: str
    uncertainty: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}, got {self.verdict!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Result:
    """Base of every analysis result (subclasses are frozen dataclasses; see the module docstring)."""

    name: ClassVar[str] = "result"
    title: ClassVar[str] = ""

    # ---- what a subclass provides -------------------------------------------------------------
    def findings(self) -> list[str]:
        return []

    def numbers(self) -> dict[str, Any]:
        return {}

    def tables(self) -> dict[str, pd.DataFrame]:
        return {}

    def plot(self, ax=None):
        return None

    def verdict(self) -> Verdict | None:
        return None

    @property
    def control(self) -> str:
        return ""

    @property
    def uncertainty(self) -> str:
        return ""

    def inputs(self) -> dict[str, Any]:
        """Provenance recorded in ``summary.json`` (model, adapter, files); override where known."""
        return dict(getattr(self, "meta", None) or {})

    # ---- rendering (shared) --------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """What ``summary.json`` holds: findings, verdict, control, uncertainty, numbers, inputs."""
        v = self.verdict()
        return json_safe({"findings": self.findings(), **({"verdict": v.to_dict()} if v else {}),
                          "control": self.control, "uncertainty": self.uncertainty, **self.numbers(),
                          **self.inputs()})

    def save(self, out: str | Path, overwrite: bool = False) -> Path:
        """Write the table(s), plot and summary into the directory ``out``, atomically. An ``out`` that emprobe wrote
        before is replaced only with ``overwrite``; a file or a directory emprobe did not write never is."""
        out = Path(out)
        tables = self.tables()
        with atomic_dir(out, overwrite=overwrite) as tmp:
            for i, (name, df) in enumerate(tables.items()):
                write_parquet(df, tmp / ("table.parquet" if i == 0 else f"{name}.parquet"))
            fig = self.plot()
            if fig is not None:
                save_figure(fig, tmp / "plot.png")
            summary = self.summary()
            write_json(tmp / "summary.json", manifest(f"analysis-{self.name}", **summary))
            (tmp / "summary.txt").write_text("\n".join(summary["findings"]) + "\n", encoding="utf-8")
        return out

    def to_section(self, plots: list[str] | None = None, **extra: Any) -> dict[str, Any]:
        """A report section: title, findings, numbers (numeric figures only; text-valued ones go to ``labels``),
        control, uncertainty, verdict, plot paths."""
        v = self.verdict()
        nums = self.numbers()
        labels = {k: x for k, x in nums.items() if not isinstance(x, (int, float, np.integer, np.floating))}
        return json_safe({"title": self.title or self.name, "findings": self.findings(),
                          "numbers": json_safe({k: x for k, x in nums.items() if k not in labels}, digits=6),
                          **({"labels": labels} if labels else {}),
                          "control": self.control, "uncertainty": self.uncertainty,
                          **({"verdict": v.to_dict()} if v else {}), "plots": plots or [], **extra})

    def __str__(self) -> str:
        head = f"{type(self).__name__}: {self.title or self.name}"
        return "\n".join([head, *(f"- {f}" for f in self.findings())])

    def _repr_markdown_(self) -> str:  # notebooks render the findings, not the raw arrays
        return "\n".join([f"**{self.title or self.name}**", "", *(f"- {f}" for f in self.findings())])


def write_parquet(df: pd.DataFrame, path: Path) -> None:
    """``df`` as parquet; object columns mixing types become strings (parquet needs one type per column)."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and not all(isinstance(v, (str, type(None))) for v in df[col]):
            df[col] = df[col].map(lambda v: None if v is None else str(v))
    df.to_parquet(path, index=False)


def save_figure(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (110 dpi, tight) and close it."""
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def new_figure(n_panels: int = 1, width: float = 5.0, height: float = 3.6):
    """A matplotlib figure with ``n_panels`` side-by-side axes (Agg backend, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n_panels, figsize=(width * n_panels, height), squeeze=False)
    return fig, list(axes[0])


def figure_for(ax, n_panels: int = 1, width: float = 5.0, height: float = 3.6):
    """``(fig, axes)``: the caller's axes when given (one ``Axes`` or a sequence), else a new figure."""
    if ax is None:
        return new_figure(n_panels, width, height)
    axes = list(ax) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) < n_panels:
        raise ValueError(f"this plot needs {n_panels} axes, got {len(axes)}")
    return axes[0].figure, axes


def control_first(findings: list[str], beaten: bool, message: str) -> list[str]:
    """Put ``message`` first when the control beats (or explains away) the effect."""
    return [message, *findings] if beaten else findings
