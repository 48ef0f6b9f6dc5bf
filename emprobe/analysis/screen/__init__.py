"""Training-data screening: per-example projection difference on a misalignment direction, and a retrain test.
Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``)."""

from emprobe.analysis.screen.compute import screen
from emprobe.analysis.screen.result import ScreenResult

__all__ = ["ScreenResult", "screen"]
