"""Off-domain margins at the checkpoints of runs and the EM-specific rise over an aligned-data control
(``ep.margins``). Layer-free (the judge-free margin reads log-probs only)."""

from emprobe.analysis.margins.compute import checkpoint_table, margins, resolve_runs, rises
from emprobe.analysis.margins.result import MarginsResult

__all__ = ["MarginsResult", "checkpoint_table", "margins", "resolve_runs", "rises"]
