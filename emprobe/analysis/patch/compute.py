"""Cross-model activation patching between a base model and its fine-tune.

Run the fine-tuned model with its residual stream at layer ``l`` (the last prompt token, or every prompt
position) replaced by the base model's activation for the same prompt (``base→tuned``), and the reverse
(``tuned→base``); per question, the part of the base-to-fine-tuned margin gap restored (nats/token).

No best-of-cells: the questions are split in two halves (seeded); the (layer, span) cell is chosen on one half
(the largest mean restored) and the effect measured on the other, and vice versa, so every question's effect
comes from a cell chosen without it (cross-fitting), with a t-interval over questions. Control: the same patch
with *another question's* activation from the same source model (never the same prompt), at the same cell, on
the same questions. The verdict (:mod:`emprobe.analysis.causal_effect`) needs the restored part and its excess
over the control, with a SESOI of ``min_fraction`` of the gap (inconclusive when no gap is established). The
full sweep (every cell on every question) is kept as a descriptive heatmap. See
:mod:`emprobe.analysis.patch.sweep` for the mechanics.
"""

from __future__ import annotations

from typing import Sequence

from emprobe.analysis.causal import causal_questions, load_pair
from emprobe.analysis.patch.result import PatchResult
from emprobe.analysis.patch.sweep import PATCH_DIRECTIONS, SPANS, check_directions, sweep
from emprobe.analysis.stats.subspace import control_rng
from emprobe.errors import ConfigError


def patch(base, tuned, questions="builtin:em-core", *, layers: str | Sequence[int] = "0:30:3",
          spans: Sequence[str] = SPANS, n_questions: int | None = 12,
          directions: Sequence[str] = tuple(PATCH_DIRECTIONS), min_fraction: float = 0.25, batch_size: int = 8,
          seed: int = 0) -> PatchResult:
    """Cross-model activation patching between ``base`` and its fine-tune ``tuned`` (see the module docstring).

    ``base``: a loaded model, alias, hub id or directory. ``tuned``: a loaded model, a full-model directory,
    or a LoRA adapter directory (holding ``adapter_config.json``), loaded on top of ``base``:
    ``patch("smollm2-135m-instruct", "runs/x/checkpoints/step-000020")``. ``questions``: a question set with
    references (the first ``n_questions``; ``None`` = all; at least 2).
    ``layers``: ``"all"``, ``"L1,L2"``, ``"LO:HI"``, ``"LO:HI:STEP"`` or a list (layer ``l`` = residual stream
    after block ``l``); ``spans``: ``last_prompt`` and/or ``prompt``; ``directions``: ``base→tuned`` and/or
    ``tuned→base`` (the verdict reads the first). ``min_fraction``: the SESOI as a share of the gap, declared
    before looking. ``seed``: the question halves and the control's derangement.
    """
    from emprobe.models import resolve_layers

    directions = check_directions(directions)
    if not spans or set(spans) - set(SPANS):
        raise ConfigError(f"patch spans must be among {list(SPANS)}, got {list(spans)}")
    if not 0 < min_fraction <= 1:
        raise ConfigError(f"min_fraction must be in (0, 1], got {min_fraction}")
    base_lm, tuned_lm, meta = load_pair(base, tuned)
    qs = causal_questions(questions, n_questions)
    if len(qs) < 2:
        raise ConfigError(f"patching needs at least 2 questions (its control uses another question's prompt), got "
                          f"{len(qs)}")
    layer_ids = resolve_layers(layers, base_lm.n_layers)
    table, clean = sweep(base_lm, tuned_lm, qs, layer_ids, list(spans), directions, batch_size, seed)
    halves = control_rng(seed + 1).permutation(len(clean)) % 2  # the two halves (cells chosen on the other)
    clean = clean.assign(half=halves)
    return PatchResult(table, clean, float(min_fraction), {**meta, "questions": qs.name})
