"""``AnalysisResult``: what every analysis verb writes — a tidy table, a PNG plot and a short summary.

On disk (one directory, written atomically)::

    OUT/
      table.parquet        the tidy main table (plus any extra tables as <name>.parquet)
      plot.png             the figure
      summary.json         findings (sentences with numbers), control, uncertainty, inputs, emprobe version
      summary.txt          the findings as plain text
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from emprobe.io import atomic_dir, manifest, write_json


@dataclass
class AnalysisResult:
    """One analysis' outputs. ``summary`` holds ``findings`` (sentences), ``control`` and ``uncertainty``."""

    name: str
    table: pd.DataFrame
    summary: dict[str, Any]
    figure: Any = None  # a matplotlib Figure
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def findings(self) -> list[str]:
        return list(self.summary.get("findings", []))

    def save(self, out: str | Path, overwrite: bool = True) -> Path:
        """Write the table(s), plot and summary into ``out`` (replaced atomically)."""
        out = Path(out)
        with atomic_dir(out, overwrite=overwrite) as tmp:
            _parquet(self.table, tmp / "table.parquet")
            for name, df in self.tables.items():
                _parquet(df, tmp / f"{name}.parquet")
            if self.figure is not None:
                save_figure(self.figure, tmp / "plot.png")
            write_json(tmp / "summary.json", manifest(f"analysis-{self.name}", **self.summary))
            (tmp / "summary.txt").write_text("\n".join(self.findings) + "\n", encoding="utf-8")
        return out


def _parquet(df: pd.DataFrame, path: Path) -> None:
    df = df.copy()
    for col in df.columns:  # parquet needs one type per column; mixed objects become strings
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
