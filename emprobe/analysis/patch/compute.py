"""Cross-model activation patching between a base model and its fine-tune.

Run the fine-tuned model with its residual stream at layer ``l`` (the last prompt token, or every prompt
position) replaced by the base model's activation for the same input (``base→tuned``), and the reverse
(``tuned→base``); report the fraction of the base-to-fine-tuned margin gap restored, with a bootstrap CI over
questions. Control: the same patch with another item's activation from the same source model. When the
control restores as much (or lies inside the real patch's CI), the first finding says so: any activation
of that model, not this item's, undoes the shift. See :mod:`emprobe.analysis.patch.sweep` for the mechanics.
"""

from __future__ import annotations

from typing import Sequence

from emprobe.analysis.causal import causal_questions, load_pair
from emprobe.analysis.patch.result import PatchResult
from emprobe.analysis.patch.sweep import (
    PATCH_DIRECTIONS,
    SPANS,
    check_directions,
    sweep,
)
from emprobe.errors import ConfigError


def patch(base, tuned, questions="builtin:em-core", *, layers: str | Sequence[int] = "0:30:3",
          spans: Sequence[str] = SPANS, n_questions: int | None = 12,
          directions: Sequence[str] = tuple(PATCH_DIRECTIONS), batch_size: int = 8, seed: int = 0) -> PatchResult:
    """Cross-model activation patching between ``base`` and its fine-tune ``tuned`` (see the module docstring).

    ``base``: a loaded model, alias, hub id or directory. ``tuned``: a loaded model, a full-model directory,
    or a LoRA adapter directory (holding ``adapter_config.json``), loaded on top of ``base``:
    ``patch("smollm2-135m-instruct", "runs/x/checkpoints/step-000020")``. ``questions``: a question set with
    references (the first ``n_questions``; ``None`` = all). ``layers``: ``"all"``, ``"L1,L2"``, ``"LO:HI"``,
    ``"LO:HI:STEP"`` or a list (layer ``l`` = residual stream after block ``l``); ``spans``: ``last_prompt``
    and/or ``prompt``; ``directions``: ``base→tuned`` and/or ``tuned→base``.
    """
    from emprobe.models import resolve_layers

    directions = check_directions(directions)
    if not spans or set(spans) - set(SPANS):
        raise ConfigError(f"patch spans must be among {list(SPANS)}, got {list(spans)}")
    base_lm, tuned_lm, meta = load_pair(base, tuned)
    qs = causal_questions(questions, n_questions)
    layer_ids = resolve_layers(layers, base_lm.n_layers)
    table, ref = sweep(base_lm, tuned_lm, qs, layer_ids, list(spans), directions, batch_size, seed)
    return PatchResult(table, ref["margin_base"], ref["margin_tuned"], ref["gap_se"], ref["n_questions"],
                       ref["n_references"], {**meta, "questions": qs.name})
