"""Model diffing: per-token KL(base ‖ tuned), the activation-difference lens, per-question KL vs EM.
Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``)."""

from emprobe.analysis.diff.compute import diff
from emprobe.analysis.diff.models import ModelSet
from emprobe.analysis.diff.result import DiffResult

__all__ = ["DiffResult", "ModelSet", "diff"]
