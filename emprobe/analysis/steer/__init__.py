"""Steering a model along a direction against random directions. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.steer.compute import steer
from emprobe.analysis.steer.result import SteerResult

__all__ = ["SteerResult", "steer"]
