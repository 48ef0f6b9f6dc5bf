"""What the causal verbs (:func:`~emprobe.analysis.patch.compute.patch`, :func:`~emprobe.analysis.steer.compute.steer`,
:func:`~emprobe.analysis.ablate.compute.ablate`) share: their inputs, the direction's provenance check, the margin
under an edit, samples under an edit, and the variance-matched control directions.

Metric: the judge-free margin of :mod:`emprobe.evaluation.margin` — mean per-token log-prob of a question's
misaligned reference answers minus its aligned ones (higher = leans misaligned), per question.

Circularity: a direction fit on a question's reference answers separates *those* answers by construction, so a
steer or ablate that scores them measures the fit, not a mechanism. :func:`check_provenance` refuses a direction
whose recorded fit questions (``Direction.fit_question_ids``) overlap the causal questions (cross-fit instead:
fit on the other questions).

Controls (:func:`control_directions`): directions drawn from the *same activations* the direction was fit on,
so they carry the same kind of variance — ``covariance`` draws ``r ~ N(0, Σ̂)`` (a Gaussian combination of the
centred activations) and ``shuffled`` mean differences with the labels permuted within each contrastive pair.
Each is sign-oriented on the true labels (misaligned projects higher, the strongest version of the control) and
scaled to the direction's norm at every layer.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch

from emprobe.analysis.stats.subspace import control_rng
from emprobe.errors import ConfigError, DataError
from emprobe.probes.interventions import intervene

#: fewest control directions a steer or ablate accepts: a rank p-value can then reach 1/20
MIN_CONTROLS = 19


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


def load_tuned(base_lm, tuned):
    """``tuned`` as a loaded model: a loaded model, a full-model directory, or a LoRA adapter directory (loaded
    on top of ``base_lm`` with its dtype and device)."""
    from emprobe.models import load_model
    from emprobe.models.loading import ModelSpec

    if not is_adapter_dir(tuned):
        return load_model(tuned)
    if base_lm.spec.adapter:
        raise ConfigError(f"the base model already carries the adapter {base_lm.spec.adapter}; pass the plain "
                          "base model with a LoRA directory as the fine-tuned model")
    return load_model(ModelSpec.coerce(base_lm.spec, adapter=str(tuned)))


def load_pair(base, tuned) -> tuple[Any, Any, dict]:
    """``(base, tuned, provenance)`` as loaded models.

    ``base``: a loaded model, alias, hub id or directory. ``tuned``: a loaded model, a full-model directory,
    or a LoRA adapter directory (holding ``adapter_config.json``), which is loaded on top of ``base`` (with
    ``base``'s dtype and device when ``base`` is already loaded).
    """
    from emprobe.models import load_model

    base_lm = load_model(base)
    tuned_lm = load_tuned(base_lm, tuned)
    meta = {"model": base_lm.spec.name, "adapter": tuned_lm.spec.adapter}
    if tuned_lm.spec.name != base_lm.spec.name:
        meta["tuned_model"] = tuned_lm.spec.name
    return base_lm, tuned_lm, meta


def check_provenance(direction, questions, *, allow_overlap: bool = False) -> str:
    """``"disjoint"`` when the direction was fit on none of ``questions``; ``"unknown"`` (with a warning) when
    it records no fit questions. A direction fit on some of them raises a :class:`ConfigError` naming them,
    unless ``allow_overlap`` (then ``"overlap"``, with a warning; the verdict becomes inconclusive)."""
    fit = direction.fit_question_ids
    if fit is None:
        warnings.warn("the direction records no fit questions (Direction.source['question_ids']); steer/ablate "
                      "cannot check that it was fit on other questions than the ones it is scored on", stacklevel=3)
        return "unknown"
    shared = sorted(set(fit) & {str(q.id) for q in questions})
    if not shared:
        return "disjoint"
    msg = (f"the direction was fit on {len(shared)} of the {len(questions)} causal questions (e.g. {shared[0]!r}): "
           "scoring them is circular")
    if not allow_overlap:
        raise ConfigError(f"{msg}; fit the direction on other questions (cross-fit) or pass allow_overlap=True")
    warnings.warn(msg, stacklevel=3)
    return "overlap"


PROVENANCE_CAVEATS = {
    "overlap": "The direction was fit on the questions it is scored on: the effect is circular (it measures the fit), "
               "so the verdict is inconclusive; fit the direction on other questions.",
    "unknown": "The direction records no fit questions, so it cannot be checked that it was fit on other questions "
               "than the ones scored here (a circular fit would inflate the effect)."}


def circular_reason(provenance: str) -> str | None:
    """The ``cannot_test`` reason of a verdict for a direction scored on its own fit questions."""
    return "the direction was fit on the questions it is scored on (circular)" if provenance == "overlap" else None


def margins_under(lm, questions, edits=None, batch_size: int = 8, share_prompts: bool | None = None) -> pd.Series:
    """Per-question margins (indexed by question id) with ``edits`` (``{layer: edit}``) active (``share_prompts``:
    see :func:`~emprobe.evaluation.margin.sequence_logprobs`)."""
    from emprobe.evaluation import margin_scores

    with intervene(lm.model, edits or {}):
        summ = margin_scores(lm, questions, batch_size=batch_size, share_prompts=share_prompts).summary
    return summ.set_index("question_id").margin.astype(float)


def mean_margin(lm, questions, edits=None, batch_size: int = 8) -> tuple[float, pd.Series]:
    """Mean margin over questions (and the per-question margins) with ``edits`` (``{layer: edit}``) active."""
    per_q = margins_under(lm, questions, edits, batch_size)
    return float(per_q.mean()), per_q


def sample_under(lm, questions, edits, n: int = 3, max_new_tokens: int = 48, temperature: float = 0.7,
                 top_p: float = 0.9, seed: int = 0) -> list[dict]:
    """Answers to the first ``n`` questions with ``edits`` active (sampled at ``temperature`` / ``top_p``)."""
    from emprobe.models.generation import generate_chat

    qs = list(questions)[:n]
    with intervene(lm.model, edits or {}):
        answers = generate_chat(lm, [q.messages(0) for q in qs], max_new_tokens, temperature, top_p, seed)
    return [{"question_id": q.id, "question": q.paraphrases[0], "answer": a} for q, a in zip(qs, answers)]


# ---- variance-matched control directions --------------------------------------------------------------
def require_controls(n_random: int, n_shuffled: int, what: str) -> None:
    if min(n_random, n_shuffled) < 0 or n_random + n_shuffled < MIN_CONTROLS:
        raise ConfigError(f"{what} needs at least {MIN_CONTROLS} control directions (n_random + n_shuffled), got "
                          f"n_random={n_random}, n_shuffled={n_shuffled}")


def control_store(activations, direction):
    """The labelled activation store the controls are drawn from: ``activations`` (a store or its directory), by
    default the store the direction records as its source."""
    from emprobe.probes import ActivationStore

    if activations is None:
        recorded = direction.source.get("store")
        if not recorded or not Path(recorded).is_dir():
            raise ConfigError("activations is required: the labelled activation store to draw the control directions "
                              f"from (the direction's recorded store {recorded!r} is not on disk)")
        activations = recorded
    store = ActivationStore.load(activations)
    if store.d_model != direction.d_model:
        raise DataError(f"activations have d_model={store.d_model}, the direction {direction.d_model}")
    return store


def _shuffled_labels(y: np.ndarray, pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``y`` permuted within each contrastive pair (a sign flip per pair); globally when no pair has both labels."""
    out = y.copy()
    keys = pd.Series(pairs).astype(str).to_numpy()
    paired = False
    for key in np.unique(keys):
        idx = np.flatnonzero(keys == key)
        if len(set(y[idx])) == 2:
            out[idx] = y[rng.permutation(idx)]
            paired = True
    return out if paired else y[rng.permutation(len(y))]


def control_directions(store, direction, layers: Sequence[int], *, exclude: Sequence[str] = (), n_random: int = 10,
                       n_shuffled: int = 10, seed: int = 0) -> list[tuple[str, int, Any]]:
    """``[(kind, i, Direction)]``: ``n_random`` covariance draws and ``n_shuffled`` shuffled-label mean differences
    from ``store`` (labelled; the direction's position) at ``layers``, each oriented on the labels and scaled to
    ``direction``'s raw norm per layer (see the module docstring). Rows of the questions in ``exclude`` (the
    causal set) are left out, as they were for the cross-fit direction."""
    from emprobe.probes import Direction

    missing = [l_ for l_ in layers if l_ not in store.layers]
    if missing:
        raise ConfigError(f"activations lack layer(s) {missing} of the direction (stored: {store.layers})")
    y_all, groups = store.labels, np.asarray([str(g) for g in store.groups])
    keep = ~np.isnan(y_all) & ~np.isin(groups, list(map(str, exclude)))
    y = y_all[keep].astype(int)
    if y.min(initial=1) == y.max(initial=0) or len(y) < 4:
        raise DataError("activations need misaligned and aligned (labelled) items outside the causal questions to "
                        f"draw control directions; got {int(y.sum())} misaligned, {int((1 - y).sum())} aligned")
    x = store.get(direction.position, list(layers)).double().numpy()[keep]  # [n, L, d]
    xc = x - x.mean(0)
    true_diff = x[y == 1].mean(0) - x[y == 0].mean(0)                        # [L, d]
    norms = np.array([float(direction.vector(l_, unit=False).norm()) for l_ in layers])
    rng, pairs = control_rng(seed), np.asarray(store.pairs, dtype=object)[keep]
    weights = [("covariance", i, rng.standard_normal(len(y))) for i in range(n_random)]
    for i in range(n_shuffled):
        ys = _shuffled_labels(y, np.where(pd.isna(pairs), groups[keep], pairs), rng)
        weights.append(("shuffled", i, ys / ys.sum() - (1 - ys) / (1 - ys).sum()))
    out = []
    for kind, i, w in weights:
        raw = np.einsum("n,nld->ld", w, xc)
        raw *= np.sign((raw * true_diff).sum(1, keepdims=True) + 1e-300)     # misaligned projects higher
        raw *= (norms / np.linalg.norm(raw, axis=1).clip(min=1e-12))[:, None]
        out.append((kind, i, Direction(f"{kind}-control", list(layers), torch.from_numpy(raw).float(),
                                       direction.position, best_layer=direction.best_layer)))
    return out
