"""Claim 3: train- vs eval-prompt activation shifts, misaligned vs aligned control. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.overlap.compute import overlap
from emprobe.analysis.overlap.result import OverlapResult

__all__ = ["OverlapResult", "overlap"]
