"""Activation shifts and their overlap per run (paper §3): do training-prompt shifts live where eval shifts do?

For training prompts and evaluation prompts, the shift (delta) is the fine-tuned minus the pre-fine-tuning
activation at the last prompt token, per layer. Per run, layer and k: the overlap of the top-k PCA subspaces
of the two delta sets, on the raw shifts (uncentred: a shift shared by every prompt is the first direction)
and on the shifts with the common component removed (each set's mean shift subtracted); the random-subspace
expectation (k/d) as a secondary reference; the cosine of the two mean shifts; the share of shift energy in
the mean (how much of the shift is common to every prompt); and, across (training subset, eval question)
pairs, the Spearman correlation between how similar their *prompt activations* are and how similar their
*shifts* are, with a permutation p-value over eval questions.

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from emprobe.analysis.stats import paired_row_spearman, permutation_pvalue, zscore_vs_null
from emprobe.analysis.stats.subspace import (
    cosine,
    gram_overlap,
    gram_stack,
    random_overlap_null,
)
from emprobe.errors import ConfigError

SHIFTS = ("raw", "mean_removed")


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def training_subsets(n_train: int, n_subsets: int) -> np.ndarray:
    """The subset of each training prompt (round robin over ``min(n_subsets, n_train)`` subsets)."""
    return np.arange(n_train) % max(1, min(n_subsets, n_train))


def pair_matrices(base_train: np.ndarray, delta_train: np.ndarray, subsets: np.ndarray, base_eval: np.ndarray,
                  delta_eval: np.ndarray, questions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(prompt similarity, shift similarity)``, each ``[n_subsets, n_questions]``: cosines of the (training subset,
    eval question) mean base activations (centred on the mean of all prompts), and of their mean shifts."""
    centre = np.concatenate([base_train, base_eval]).mean(0)
    subs, qs = np.unique(subsets), np.unique(questions)
    p_s = _unit_rows(np.stack([base_train[subsets == s].mean(0) for s in subs]) - centre)
    p_q = _unit_rows(np.stack([base_eval[questions == q].mean(0) for q in qs]) - centre)
    d_s = _unit_rows(np.stack([delta_train[subsets == s].mean(0) for s in subs]))
    d_q = _unit_rows(np.stack([delta_eval[questions == q].mean(0) for q in qs]))
    return p_s @ p_q.T, d_s @ d_q.T


def pair_similarity(base_train: np.ndarray, delta_train: np.ndarray, subsets: np.ndarray,
                    base_eval: np.ndarray, delta_eval: np.ndarray, questions: np.ndarray,
                    n_permutations: int = 1000, seed: int = 0) -> dict[str, float]:
    """Spearman ρ over (training subset, eval question) pairs between prompt similarity and shift similarity
    (:func:`pair_matrices`). The null shuffles which eval question each shift belongs to."""
    prompt, sims = pair_matrices(base_train, delta_train, subsets, base_eval, delta_eval, questions)
    prompt_sim = prompt.ravel()
    # permuting the eval questions' shifts permutes the columns of the shift-similarity matrix, so its ranks
    # permute with it: every null ρ is one dot product of ranks
    rp = rankdata(prompt_sim) - (len(prompt_sim) + 1) / 2
    rs = rankdata(sims.ravel()).reshape(sims.shape) - (sims.size + 1) / 2
    den = float(np.linalg.norm(rp) * np.linalg.norm(rs))
    rho = float(rp @ rs.ravel() / den) if den > 0 else 0.0
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(sims.shape[1]) for _ in range(n_permutations)])
    null = rs[:, perms].transpose(1, 0, 2).reshape(n_permutations, -1) @ rp / den if den > 0 else np.zeros(0)
    return {"pair_rho": rho, "pair_p": permutation_pvalue(rho, null), "n_pairs": len(prompt_sim)}


def pair_rho_difference(prompt: np.ndarray, shifts: dict[str, np.ndarray], n_boot: int = 1000, seed: int = 0,
                        level: float = 0.95) -> dict[str, float]:
    """Pair-similarity ρ of each run (``shifts[run]``: ``[n_subsets, n_questions]`` shift similarities, ``prompt``
    the shared prompt similarities) and misaligned − control with a paired percentile bootstrap CI: training
    subsets and eval questions resampled, the same draw for both runs."""
    s, q = prompt.shape
    rng = np.random.default_rng([seed, 0x9A1E])
    i_s, i_q = rng.integers(0, s, (n_boot, s)), rng.integers(0, q, (n_boot, q))

    def draws(m: np.ndarray) -> np.ndarray:
        return m[i_s[:, :, None], i_q[:, None, :]].reshape(n_boot, -1)

    p = draws(prompt)
    rho = {name: float(paired_row_spearman(prompt.ravel(), m.ravel())[0]) for name, m in shifts.items()}
    boots = {name: paired_row_spearman(p, draws(m)) for name, m in shifts.items()}
    out = {f"pair_rho_{name}": v for name, v in rho.items()}
    if "control" in shifts:
        diff = boots["misaligned"] - boots["control"]
        lo, hi = np.quantile(diff, [(1 - level) / 2, 1 - (1 - level) / 2]) if n_boot > 10 else (np.nan, np.nan)
        out.update(pair_diff=rho["misaligned"] - rho["control"], pair_diff_ci_low=float(lo),
                   pair_diff_ci_high=float(hi))
    return {**out, "n_subsets": s, "n_questions": q, "n_boot": n_boot}


def check_activations(base_train: np.ndarray, base_eval: np.ndarray, runs: dict[str, tuple[np.ndarray, np.ndarray]]
                      ) -> None:
    """Raise :class:`ConfigError` unless every run's activations match the base's shapes and are finite."""
    for name, (tt, te) in runs.items():
        for a, b in ((base_train, tt), (base_eval, te)):
            if a.shape != b.shape:
                raise ConfigError(f"base and {name} activations differ in shape: {a.shape} vs {b.shape}")
    if not all(np.all(np.isfinite(a)) for a in (base_train, base_eval, *(x for r in runs.values() for x in r))):
        raise ConfigError("NaN or inf in activations")


def run_tables(base_train: np.ndarray, base_eval: np.ndarray, runs: dict[str, tuple[np.ndarray, np.ndarray]],
               layers: Sequence[int], eval_questions: Sequence[str], ks: Sequence[int] = (1, 2, 4, 8),
               n_subsets: int = 8, n_random: int = 200, n_permutations: int = 1000, seed: int = 0
               ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep (run × layer × k × raw/mean-removed overlap) and the per-(run, layer) shift table, from
    ``[n, L, d]`` activations aligned with ``layers`` (``runs[name] = (tuned_train, tuned_eval)``)."""
    check_activations(base_train, base_eval, runs)
    d = base_train.shape[-1]
    subsets = training_subsets(len(base_train), n_subsets)
    questions = np.asarray(eval_questions)
    nulls = {k: random_overlap_null(d, k, n_random, seed) for k in ks}
    sweep, shifts = [], []
    for name, (tuned_train, tuned_eval) in runs.items():
        d_train, d_eval = tuned_train - base_train, tuned_eval - base_eval
        grams = gram_stack(d_train, d_eval)
        for j, layer in enumerate(layers):
            a, b = d_train[:, j], d_eval[:, j]
            sweep += [{"run": name, "layer": layer, **row} for row in _overlaps([g[j] for g in grams], ks, nulls, d)]
            pairs = pair_similarity(base_train[:, j], a, subsets, base_eval[:, j], b, questions, n_permutations, seed)
            shifts.append({"run": name, "layer": layer, **shift_stats(a, b), **pairs})
    if not sweep:
        raise ConfigError(f"no k in {list(ks)} fits {len(base_train)} training and {len(base_eval)} eval prompts")
    return pd.DataFrame(sweep), pd.DataFrame(shifts)


def _overlaps(grams: list[np.ndarray], ks: Sequence[int], nulls: dict[int, np.ndarray], d: int) -> list[dict]:
    """Raw and mean-removed top-k overlaps of one layer's train/eval shifts (from their Gram matrices)."""
    tt, ee, te = grams
    rows = []
    for k in ks:
        for shift in SHIFTS:
            center = shift == "mean_removed"
            if k > min(len(tt) - center, len(ee) - center, d):
                continue
            obs = gram_overlap(tt, ee, te, k, center)
            null = nulls[k]
            rows.append({"k": k, "shifts": shift, "overlap": obs, "random_mean": float(null.mean()),
                         "random_sd": float(null.std(ddof=1)), "expected_random": k / d,
                         "z": zscore_vs_null(obs, null)})
    return rows


def shift_stats(d_train: np.ndarray, d_eval: np.ndarray) -> dict[str, float]:
    """Mean shift norms, the cosine of the two mean shifts, and the share of each set's shift energy that is
    common to every prompt (``|mean shift|² / mean |shift|²``: 1 when every prompt moves the same way)."""
    m_t, m_e = d_train.mean(0), d_eval.mean(0)

    def common(d: np.ndarray, m: np.ndarray) -> float:
        e = float((d ** 2).sum(1).mean())
        return float(m @ m) / e if e > 0 else 0.0

    return {"shift_norm_train": float(np.linalg.norm(d_train, axis=-1).mean()),
            "shift_norm_eval": float(np.linalg.norm(d_eval, axis=-1).mean()),
            "mean_shift_cosine": cosine(m_t, m_e), "common_fraction_train": common(d_train, m_t),
            "common_fraction_eval": common(d_eval, m_e)}
