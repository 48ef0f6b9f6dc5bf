"""Analyses of emergent misalignment; each verb returns a typed :class:`Result`: numbers and tables, with
findings, plot, verdict and files rendered on demand.

- :func:`track` — follow base-model directions through a run's checkpoints (projections, refit cosine,
  drift, LoRA adapter trajectory);
- :func:`priors` — predict per-question EM after fine-tuning from pre-fine-tuning activations (paper §2);
- :func:`overlap` — overlap of training- vs eval-prompt activation shifts, misaligned vs aligned control (§3);
- :func:`dynamics` — in-domain loss vs out-of-domain alignment across checkpoints and runs (paper §1);
- :func:`monitor` — detect EM checkpoints from direction drift alone;
- :func:`patch`, :func:`steer`, :func:`ablate` — causal checks of a fine-tune's change and of a direction;
- :func:`explain` — why per-question EM is uneven (factors, reliability ceiling, categories, datasets).

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
from emprobe.analysis.results import Result, Verdict
from emprobe.analysis.overlap_result import OverlapResult
from emprobe.analysis.overlap_study import overlap
from emprobe.analysis.steer import SteerResult, steer
from emprobe.analysis.track import track
from emprobe.analysis.track_result import TrackResult

__all__ = ["AblateResult", "PatchResult", "SteerResult", "ablate", "patch", "steer"]
__all__ += ["Result", "Verdict"]
__all__ += ["OverlapResult", "PriorsResult", "load_target", "overlap", "priors"]
__all__ += ["DynamicsResult", "MonitorResult", "TrackResult", "dynamics", "monitor", "track"]
__all__ += ["ExplainResult", "explain"]
