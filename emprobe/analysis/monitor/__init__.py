"""Detect EM checkpoints from direction drift alone. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.monitor.compute import monitor
from emprobe.analysis.monitor.result import MonitorResult

__all__ = ["MonitorResult", "monitor"]
