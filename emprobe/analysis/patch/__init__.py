"""Activation patching between a base and a fine-tuned model. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.patch.compute import patch
from emprobe.analysis.patch.result import PatchResult

__all__ = ["PatchResult", "patch"]
