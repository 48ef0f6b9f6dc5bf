"""Per-question EM across fine-tunes: agreement between runs on different datasets or models, and its topic share."""

from emprobe.analysis.consistency.compute import consistency
from emprobe.analysis.consistency.result import ConsistencyResult

__all__ = ["ConsistencyResult", "consistency"]
