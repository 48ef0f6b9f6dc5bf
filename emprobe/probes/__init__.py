"""Probes: activation extraction and linear misalignment directions.

Conventions (every API here that takes a layer or position):

* layer ``l`` = residual stream *after* decoder block ``l`` (0-based) = TransformerLens
  ``blocks.{l}.hook_resid_post`` = HF ``hidden_states[l + 1]`` except the last layer (HF's last hidden
  state is after the final norm);
* positions ``last_prompt`` (last token of the templated prompt, generation header included),
  ``prompt_mean`` (mean over the prompt's tokens) and ``response_mean`` (mean over the response's tokens).

Pipeline: :func:`load_prompts` (questions / chat JSONL / judged table, optionally a ``references`` or
``personas`` contrast) -> :func:`extract` with a backend (``hooks``, ``transformerlens``, ``nnsight``) ->
:class:`ActivationStore` -> :func:`fit_direction` with an estimator (``mean_diff``, ``persona``, ``logistic``,
``pca``) -> :class:`Direction` (several side by side: :class:`DirectionsResult`).
"""

from emprobe.probes.backends import ActivationBackend, get_backend
from emprobe.probes.directions import Direction
from emprobe.probes.estimators import (
    METHODS, LogisticProbe, MeanDiff, PairedPCA, PersonaDiff, RandomDirection, auroc, make_estimator,
)
from emprobe.probes.extraction import extract
from emprobe.probes.fit import cross_validate, fit_direction
from emprobe.probes.result import DirectionsResult
from emprobe.probes.sources import LabelRule, PromptItem, PromptSet, load_prompts
from emprobe.probes.store import ActivationStore, ensure_compatible
from emprobe.probes.tokens import POSITIONS, TokenBatch, make_batches, parse_positions

__all__ = [
    "METHODS", "POSITIONS", "ActivationBackend", "ActivationStore", "Direction", "DirectionsResult", "LabelRule",
    "LogisticProbe", "MeanDiff", "PairedPCA", "PersonaDiff", "PromptItem", "PromptSet", "RandomDirection",
    "TokenBatch", "auroc", "cross_validate", "ensure_compatible", "extract", "fit_direction", "get_backend",
    "load_prompts", "make_batches", "make_estimator", "parse_positions",
]
