"""Why per-question EM is uneven: factors, reliability ceiling, categories, datasets. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.explain.compute import explain
from emprobe.analysis.explain.result import ExplainResult

__all__ = ["ExplainResult", "explain"]
