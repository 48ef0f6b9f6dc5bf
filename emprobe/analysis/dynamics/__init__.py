"""Claim 1: in-domain loss vs off-domain alignment across checkpoints and runs. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.dynamics.compute import dynamics
from emprobe.analysis.dynamics.result import DynamicsResult

__all__ = ["DynamicsResult", "dynamics"]
