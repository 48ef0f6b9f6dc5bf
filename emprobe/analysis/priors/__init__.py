"""Claim 2: pre-fine-tuning prompt activations predict per-question EM. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.priors.compute import priors
from emprobe.analysis.priors.inputs import load_target
from emprobe.analysis.priors.result import PriorsResult

__all__ = ["PriorsResult", "load_target", "priors"]
