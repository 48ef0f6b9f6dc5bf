"""Analyses of emergent misalignment: one subpackage per verb, each ``compute.py`` (the verb) + ``result.py`` (its
typed :class:`~emprobe.result.Result`: numbers and tables, with findings, plot, verdict and files rendered on
demand); the shared statistics live in :mod:`emprobe.analysis.stats`.

- :mod:`~emprobe.analysis.track` — follow base-model directions through a run's checkpoints;
- :mod:`~emprobe.analysis.priors` — predict per-question EM from pre-fine-tuning activations (paper claim 2);
- :mod:`~emprobe.analysis.overlap` — training- vs eval-prompt activation shifts, misaligned vs control (claim 3);
- :mod:`~emprobe.analysis.dynamics` — in-domain loss vs off-domain alignment across runs (claim 1);
- :mod:`~emprobe.analysis.monitor` — detect EM checkpoints from direction drift alone;
- :mod:`~emprobe.analysis.patch`, :mod:`~emprobe.analysis.steer`, :mod:`~emprobe.analysis.ablate` — causal checks;
- :mod:`~emprobe.analysis.explain` — why per-question EM is uneven;
- :mod:`~emprobe.analysis.margins` — off-domain margins at every checkpoint.

The verbs are reached as ``ep.track``, ``ep.priors``, ... (``import emprobe as ep``) or from their subpackage
(``from emprobe.analysis.priors import priors``); this package does not re-export them, so a subpackage and a
function never share a name. Layer ``l`` = residual stream after decoder block ``l`` (TL
``blocks.{l}.hook_resid_post``).
"""

from emprobe.result import Result, Verdict

__all__ = ["Result", "Verdict"]
