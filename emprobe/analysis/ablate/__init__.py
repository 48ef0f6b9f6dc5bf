"""Ablating a direction in a fine-tuned model against random directions. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.ablate.compute import ablate
from emprobe.analysis.ablate.result import AblateResult

__all__ = ["AblateResult", "ablate"]
