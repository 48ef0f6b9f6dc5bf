"""Training-time mitigations of EM compared at matched in-domain loss, with claim 1's positive control."""

from emprobe.analysis.mitigations.compute import mitigations
from emprobe.analysis.mitigations.result import MitigationsResult

__all__ = ["MitigationsResult", "mitigations"]
