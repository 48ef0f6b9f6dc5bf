"""Follow base-model directions through a run's checkpoints. Layer ``l`` = residual stream after decoder block ``l``."""

from emprobe.analysis.track.compute import track
from emprobe.analysis.track.controlled import ControlledTrack
from emprobe.analysis.track.result import TrackResult

__all__ = ["ControlledTrack", "TrackResult", "track"]
