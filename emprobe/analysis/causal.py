"""What the causal verbs (:func:`~emprobe.analysis.patch.compute.patch`, :func:`~emprobe.analysis.steer.compute.steer`,
:func:`~emprobe.analysis.ablate.compute.ablate`) share: their inputs, the margin under an edit, samples under an edit,
and random control vectors.

Metric: the judge-free margin of :mod:`emprobe.evaluation.margin` — mean per-token log-prob of a question's
misaligned reference answers minus its aligned ones (higher = leans misaligned), averaged over questions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch

from emprobe.analysis.stats.subspace import control_rng
from emprobe.errors import ConfigError
from emprobe.probes.interventions import intervene


def causal_questions(source, n_questions: int | None):
    """A question set with references (a loaded set, ``builtin:NAME`` or a YAML); the first ``n_questions``
    (``None`` or 0 = all)."""
    from emprobe.data import QuestionSet, load_questions

    qs = load_questions(source).with_references()
    if n_questions:
        qs = QuestionSet(qs.questions[:n_questions], qs.source, qs.name)
    return qs


def is_adapter_dir(x: Any) -> bool:
    """True for a path to a peft LoRA directory (it holds ``adapter_config.json``)."""
    return isinstance(x, (str, Path)) and (Path(x) / "adapter_config.json").is_file()


def load_pair(base, tuned) -> tuple[Any, Any, dict]:
    """``(base, tuned, provenance)`` as loaded models.

    ``base``: a loaded model, alias, hub id or directory. ``tuned``: a loaded model, a full-model directory,
    or a LoRA adapter directory (holding ``adapter_config.json``), which is loaded on top of ``base`` (with
    ``base``'s dtype and device when ``base`` is already loaded).
    """
    from emprobe.models import load_model
    from emprobe.models.loading import ModelSpec

    base_lm = load_model(base)
    if is_adapter_dir(tuned):
        if base_lm.spec.adapter:
            raise ConfigError(f"the base model already carries the adapter {base_lm.spec.adapter}; pass the plain "
                              "base model with a LoRA directory as the fine-tuned model")
        tuned_lm = load_model(ModelSpec.coerce(base_lm.spec, adapter=str(tuned)))
    else:
        tuned_lm = load_model(tuned)
    meta = {"model": base_lm.spec.name, "adapter": tuned_lm.spec.adapter}
    if tuned_lm.spec.name != base_lm.spec.name:
        meta["tuned_model"] = tuned_lm.spec.name
    return base_lm, tuned_lm, meta


def mean_margin(lm, questions, edits=None, batch_size: int = 8) -> tuple[float, pd.Series]:
    """Mean margin over questions (and the per-question margins) with ``edits`` (``{layer: edit}``) active."""
    from emprobe.evaluation import margin_scores

    with intervene(lm.model, edits or {}):
        summ = margin_scores(lm, questions, batch_size=batch_size).summary
    per_q = summ.set_index("question_id").margin
    return float(per_q.mean()), per_q


def sample_under(lm, questions, edits, n: int = 3, max_new_tokens: int = 48, temperature: float = 0.7,
                 top_p: float = 0.9, seed: int = 0) -> list[dict]:
    """Answers to the first ``n`` questions with ``edits`` active (sampled at ``temperature`` / ``top_p``)."""
    from emprobe.models.generation import generate_chat

    qs = list(questions)[:n]
    with intervene(lm.model, edits or {}):
        answers = generate_chat(lm, [q.messages(0) for q in qs], max_new_tokens, temperature, top_p, seed)
    return [{"question_id": q.id, "question": q.paraphrases[0], "answer": a} for q, a in zip(qs, answers)]


def random_like(v: torch.Tensor, n: int, seed: int) -> list[torch.Tensor]:
    """``n`` Gaussian-random directions with the norm of ``v`` (the random-direction control)."""
    rng = control_rng(seed)
    out = []
    for _ in range(n):
        r = torch.tensor(rng.standard_normal(v.shape[-1]), dtype=torch.float32)
        out.append(r / r.norm() * v.norm())
    return out


def require_controls(n_random: int, what: str) -> None:
    if n_random < 5:
        raise ConfigError(f"{what} needs at least 5 random directions for its control, got n_random={n_random}")
