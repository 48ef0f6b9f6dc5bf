"""Analyses of emergent misalignment; each verb returns an :class:`AnalysisResult` (table, plot, summary).

- :func:`track` — follow base-model directions through a run's checkpoints (projections, refit cosine,
  drift, LoRA adapter trajectory);
- :func:`priors` — predict per-question EM after fine-tuning from pre-fine-tuning activations (paper §2);
- :func:`overlap` — overlap of training- vs eval-prompt activation shifts, misaligned vs aligned control (§3);
- :func:`dynamics` — in-domain loss vs out-of-domain alignment across checkpoints and runs (paper §1);
- :func:`monitor` — detect EM checkpoints from direction drift alone.

Every result states its control and an uncertainty figure. Layer ``l`` = residual stream after decoder
block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from emprobe.analysis.ablate import AblateResult, ablate
from emprobe.analysis.dynamics_result import DynamicsResult
from emprobe.analysis.dynamics_study import dynamics
from emprobe.analysis.explain import explain
from emprobe.analysis.explain_result import ExplainResult
from emprobe.analysis.monitor import monitor
from emprobe.analysis.monitor_result import MonitorResult
from emprobe.analysis.patch import PatchResult, patch
from emprobe.analysis.priors_result import PriorsResult
from emprobe.analysis.priors_study import load_target, priors
from emprobe.analysis.results import AnalysisResult
from emprobe.analysis.overlap_result import OverlapResult
from emprobe.analysis.overlap_study import overlap
from emprobe.analysis.steer import SteerResult, steer
from emprobe.analysis.track import track
from emprobe.analysis.track_result import TrackResult

__all__ = ["AblateResult", "PatchResult", "SteerResult", "ablate", "patch", "steer"]
__all__ += ["AnalysisResult"]
__all__ += ["OverlapResult", "PriorsResult", "load_target", "overlap", "priors"]
__all__ += ["DynamicsResult", "MonitorResult", "TrackResult", "dynamics", "monitor", "track"]
__all__ += ["ExplainResult", "explain"]
