"""Off-domain margins at every checkpoint of runs. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.margins.compute import checkpoint_table, score_checkpoints

__all__ = ["checkpoint_table", "score_checkpoints"]
