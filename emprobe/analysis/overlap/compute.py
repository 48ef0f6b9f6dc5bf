"""``overlap``: do training- and eval-prompt activation shifts share a subspace *specific to misaligned
training*? (claim 3)

Shifts (fine-tuned − base activation at the last prompt token) are measured for the misaligned run and for
its aligned-data control. A LoRA moves every prompt along a common direction, so random subspaces are a
control any fine-tune beats (kept as a secondary number); the verdict compares misaligned with the aligned
control, on shifts with the common (mean) component removed, at a (layer, k) chosen on a held-out half of
the eval questions (see :mod:`emprobe.analysis.overlap.specificity`). The pair-similarity half of the claim
(prompts with similar base activations get similar shifts) is compared the same way, misaligned − control with a
paired bootstrap over training subsets and held-out questions; the verdict needs both halves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from emprobe.analysis.overlap.result import OverlapResult
from emprobe.analysis.overlap.shifts import (
    check_activations,
    pair_matrices,
    pair_rho_difference,
    run_tables,
    training_subsets,
)
from emprobe.analysis.overlap.specificity import specificity


def overlap(base: Any, tuned: Any, train: Any = "builtin:risky-finance", questions: Any = "builtin:em-core", *,
            control: Any = None, layers: str | Sequence[int] = "all", ks: Sequence[int] = (1, 2, 4, 8),
            n_train: int = 64, n_random: int = 200, n_boot: int = 1000, n_permutations: int = 1000,
            batch_size: int = 8, seed: int = 0, layer_select: str | int | tuple[int, int] = "heldout",
            backend: str = "hooks", sesoi: float = 0.05, sesoi_pair_rho: float = 0.1) -> OverlapResult:
    """Overlap of training- vs eval-prompt activation shifts, misaligned run vs aligned control.

    ``base``: the model before fine-tuning (loaded, alias or directory); ``tuned`` / ``control``: the
    misaligned and the aligned-data control fine-tunes (loaded models, or LoRA checkpoint directories put on
    ``base``, or full model directories); ``train``: the misaligned run's training data (its first
    ``n_train`` prompts); ``questions``: the eval question set (every paraphrase). ``layer_select``:
    ``"heldout"`` | a layer fixed a priori | ``(layer, k)``.

    The claim's two parts and their smallest effects of interest, declared before looking: ``sesoi`` — the
    misaligned − control mean-removed overlap (mean squared cosine of principal angles, 0..1); ``sesoi_pair_rho``
    — the misaligned − control pair-similarity Spearman ρ. Both are tested on the held-out questions.
    """
    from emprobe.models import load_model
    from emprobe.probes import load_prompts

    base_lm = load_model(base)
    train_ps, eval_ps = load_prompts(train, limit=n_train), load_prompts(questions)
    base_train, base_eval, layer_ids = _acts(base_lm, train_ps, eval_ps, layers, backend, batch_size)
    runs = {}
    for name, m in (("misaligned", tuned), ("control", control)):
        if m is not None:
            lm = _fine_tuned(m, base_lm)
            runs[name] = _acts(lm, train_ps, eval_ps, layer_ids, backend, batch_size)[:2]
            del lm
    meta = {"model": base_lm.spec.name, "adapter": _name(tuned), "control_adapter": _name(control),
            "train": str(getattr(train, "source", train)), "eval": str(getattr(questions, "source", questions)),
            "train_sha256": train_ps.sha256, "eval_sha256": eval_ps.sha256, "position": "last_prompt"}
    return overlap_from_activations(base_train, base_eval, runs, layer_ids, [it.question_id for it in eval_ps],
                                    ks=ks, n_random=n_random, n_boot=n_boot, n_permutations=n_permutations,
                                    seed=seed, layer_select=layer_select, meta=meta, sesoi=sesoi,
                                    sesoi_pair_rho=sesoi_pair_rho)


def overlap_from_activations(base_train: np.ndarray, base_eval: np.ndarray,
                             runs: dict[str, tuple[np.ndarray, np.ndarray]], layers: Sequence[int],
                             eval_questions: Sequence[str], *, ks: Sequence[int] = (1, 2, 4, 8), n_subsets: int = 8,
                             n_random: int = 200, n_boot: int = 1000, n_permutations: int = 1000, seed: int = 0,
                             layer_select: str | int | tuple[int, int] = "heldout", meta: dict | None = None,
                             sesoi: float = 0.05, sesoi_pair_rho: float = 0.1) -> OverlapResult:
    """:func:`overlap` on ``[n, L, d]`` activations aligned with ``layers``: ``runs`` maps ``misaligned`` (and
    optionally ``control``) to ``(tuned_train, tuned_eval)``."""
    from emprobe.errors import ConfigError

    if "misaligned" not in runs:
        raise ConfigError("overlap needs the misaligned run's activations")
    if not (sesoi > 0 and sesoi_pair_rho > 0):
        raise ConfigError(f"sesoi and sesoi_pair_rho must be > 0, got {sesoi} and {sesoi_pair_rho}")
    check_activations(base_train, base_eval, runs)
    with threadpool_limits(1):  # thousands of small (n x n) decompositions: BLAS threads only contend
        sweep, shifts = run_tables(base_train, base_eval, runs, layers, eval_questions, ks, n_subsets, n_random,
                                   n_permutations, seed)
        spec = specificity({n: r[0] - base_train for n, r in runs.items()},
                           {n: r[1] - base_eval for n, r in runs.items()}, layers, eval_questions, ks, n_boot, seed,
                           layer_select)
        pair = _pair_test(base_train, base_eval, runs, list(layers).index(spec["layer"]), spec["test_rows"],
                          eval_questions, n_subsets, n_boot, seed)
    return OverlapResult(sweep=sweep, shifts=shifts, test=spec["test"], selection=spec["selection"],
                         layer=spec["layer"], k=spec["k"], layer_select=spec["how"], has_control="control" in runs,
                         n_train=len(base_train), n_eval=len(base_eval), d_model=int(base_train.shape[-1]),
                         pair_test=pair, sesoi=sesoi, sesoi_pair_rho=sesoi_pair_rho,
                         meta={**(meta or {}), "layers": list(map(int, layers)), "ks": list(map(int, ks)),
                               "n_train": len(base_train), "n_eval": len(base_eval)})


def _pair_test(base_train: np.ndarray, base_eval: np.ndarray, runs: dict, j: int, rows: np.ndarray,
               questions: Sequence[str], n_subsets: int, n_boot: int, seed: int) -> dict[str, float]:
    """Pair-similarity ρ per run at layer index ``j`` on the test rows, and misaligned − control (paired)."""
    subsets = training_subsets(len(base_train), n_subsets)
    q = np.asarray(questions)[rows]
    prompt, shifts = None, {}
    for name, (tuned_train, tuned_eval) in runs.items():
        prompt, shifts[name] = pair_matrices(base_train[:, j], tuned_train[:, j] - base_train[:, j], subsets,
                                             base_eval[rows, j], tuned_eval[rows, j] - base_eval[rows, j], q)
    return pair_rho_difference(prompt, shifts, n_boot, seed)


def _acts(lm, train_ps, eval_ps, layers, backend: str, batch_size: int):
    from emprobe.probes import extract

    out = []
    for ps in (train_ps, eval_ps):
        st = extract(lm, ps, layers=layers, positions=["last_prompt"], backend=backend, batch_size=batch_size)
        out.append(st.get("last_prompt").numpy())
    return out[0], out[1], st.layers


def _fine_tuned(m: Any, base_lm):
    """A loaded fine-tune: as it is, or a LoRA checkpoint directory put on the base model, or a model dir."""
    from emprobe.models import LoadedModel, load_model

    if isinstance(m, LoadedModel):
        return m
    if (Path(m) / "adapter_config.json").is_file():
        return load_model(base_lm.spec.name, adapter=str(m), dtype=base_lm.spec.dtype, device=base_lm.spec.device)
    return load_model(m)


def _name(m: Any) -> str | None:
    if m is None:
        return None
    spec = getattr(m, "spec", None)
    return str(spec.adapter or spec.name) if spec is not None else str(m)
