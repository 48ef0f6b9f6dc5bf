"""Activation deltas and subspace overlap (paper §3): do training-prompt shifts live where eval shifts do?

For training prompts and evaluation prompts, the delta is the fine-tuned minus the pre-fine-tuning
activation at the last prompt token, per layer. Per layer and k: overlap of the top-k (uncentred) PCA
subspaces of the two delta sets, against random k-subspaces (z = random-control standard deviations above
the random mean; the random expectation is k/d); cosine of the two mean shifts against random vectors; and,
across (training subset, eval question) pairs, the Spearman correlation between how similar their *prompt
activations* are and how similar their *shifts* are, with a permutation p-value over eval questions.

Layer ``l`` = residual stream after decoder block ``l`` (TL ``blocks.{l}.hook_resid_post``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.results import AnalysisResult, new_figure
from emprobe.analysis.stats import paired_row_spearman, permutation_pvalue, spearman
from emprobe.analysis.subspace import cosine, cosine_with_control, overlap_with_control, pca_basis
from emprobe.errors import ConfigError


def _unit_rows(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


def pair_similarity(base_train: np.ndarray, delta_train: np.ndarray, subsets: np.ndarray,
                    base_eval: np.ndarray, delta_eval: np.ndarray, questions: np.ndarray,
                    n_permutations: int = 1000, seed: int = 0) -> dict[str, float]:
    """Spearman ρ over (training subset, eval question) pairs between prompt similarity and shift similarity.

    Prompt similarity = cosine of the subset's and the question's mean base activations, both centred on
    the mean of all prompts; shift similarity = cosine of their mean deltas. The null shuffles which eval
    question each shift belongs to.
    """
    centre = np.concatenate([base_train, base_eval]).mean(0)
    subs, qs = np.unique(subsets), np.unique(questions)
    p_s = _unit_rows(np.stack([base_train[subsets == s].mean(0) for s in subs]) - centre)
    p_q = _unit_rows(np.stack([base_eval[questions == q].mean(0) for q in qs]) - centre)
    d_s = _unit_rows(np.stack([delta_train[subsets == s].mean(0) for s in subs]))
    d_q = _unit_rows(np.stack([delta_eval[questions == q].mean(0) for q in qs]))
    prompt_sim = (p_s @ p_q.T).ravel()
    shift_sim = (d_s @ d_q.T).ravel()
    rho = spearman(prompt_sim, shift_sim)
    rng = np.random.default_rng(seed)
    sims = d_s @ d_q.T  # permuting the eval questions' shifts permutes these columns
    perms = np.stack([rng.permutation(len(qs)) for _ in range(n_permutations)])
    null = paired_row_spearman(prompt_sim, sims[:, perms].transpose(1, 0, 2).reshape(n_permutations, -1))
    return {"pair_rho": rho, "pair_p": permutation_pvalue(rho, null), "n_pairs": len(prompt_sim)}


def overlap_tables(base_train: np.ndarray, tuned_train: np.ndarray, base_eval: np.ndarray, tuned_eval: np.ndarray,
                   layers: Sequence[int], eval_questions: Sequence[str], ks: Sequence[int] = (1, 2, 4, 8),
                   n_subsets: int = 8, n_random: int = 200, n_permutations: int = 1000, seed: int = 0
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sweep over layers and k (``[n, L, d]`` inputs aligned with ``layers``) and the per-layer shift table."""
    for a, b in ((base_train, tuned_train), (base_eval, tuned_eval)):
        if a.shape != b.shape:
            raise ConfigError(f"base and fine-tuned activations differ in shape: {a.shape} vs {b.shape}")
    if not all(np.all(np.isfinite(a)) for a in (base_train, tuned_train, base_eval, tuned_eval)):
        raise ConfigError("NaN or inf in activations")
    d_train, d_eval = tuned_train - base_train, tuned_eval - base_eval
    n_train, d = len(base_train), base_train.shape[-1]
    subsets = np.arange(n_train) % max(1, min(n_subsets, n_train))
    questions = np.asarray(eval_questions)
    sweep, shifts = [], []
    for j, layer in enumerate(layers):
        for k in ks:
            if k > min(len(d_train), len(d_eval), d):
                continue
            u, v = pca_basis(d_train[:, j], k, center=False), pca_basis(d_eval[:, j], k, center=False)
            sweep.append({"layer": layer, "k": k, **overlap_with_control(u, v, n_random, seed)})
        mean_cos = cosine_with_control(d_train[:, j].mean(0), d_eval[:, j].mean(0), seed=seed)
        pairs = pair_similarity(base_train[:, j], d_train[:, j], subsets, base_eval[:, j], d_eval[:, j], questions,
                                n_permutations, seed)
        shifts.append({"layer": layer, "shift_norm_train": float(np.linalg.norm(d_train[:, j], axis=-1).mean()),
                       "shift_norm_eval": float(np.linalg.norm(d_eval[:, j], axis=-1).mean()),
                       "mean_shift_cosine": mean_cos["cosine"], "mean_shift_cosine_z": mean_cos["z"],
                       "random_cosine_sd": mean_cos["random_sd"], **pairs})
    if not sweep:
        raise ConfigError(f"no k in {list(ks)} fits {len(d_train)} training and {len(d_eval)} eval prompts")
    return pd.DataFrame(sweep), pd.DataFrame(shifts)


def summarise_overlap(sweep: pd.DataFrame, shifts: pd.DataFrame, d_model: int, inputs: dict) -> AnalysisResult:
    """Findings, plot and tables for :func:`overlap_tables` output."""
    best = sweep.loc[sweep.z.idxmax()]
    sh = shifts.set_index("layer").loc[int(best.layer)]
    findings = [
        f"At layer {int(best.layer)}, the top-{int(best.k)} subspaces of training- and eval-prompt shifts overlap "
        f"{best.overlap:.3f} (mean squared cosine of principal angles) vs {best.random_mean:.4f} ± "
        f"{best.random_sd:.4f} for random {int(best.k)}-subspaces (k/d = {int(best.k) / d_model:.4f}): "
        f"{best.z:.1f} σ above the random control.",
        f"The mean shifts of training and eval prompts have cosine {sh.mean_shift_cosine:.3f} at that layer "
        f"({sh.mean_shift_cosine_z:.1f} σ above random vectors, sd {sh.random_cosine_sd:.3f}).",
        f"Across {int(sh.n_pairs)} (training subset, eval question) pairs, prompt-activation similarity and "
        f"shift similarity correlate with Spearman ρ = {sh.pair_rho:.3f} (permutation p = {sh.pair_p:.3g}).",
    ]
    fig, (ax1, ax2) = new_figure(2)
    for k, g in sweep.groupby("k"):
        ax1.plot(g.layer, g.overlap, marker="o", ms=3, label=f"k={k}")
        ax1.plot(g.layer, g.random_mean + 2 * g.random_sd, ls=":", color="grey", lw=0.8)
    ax1.set(xlabel="layer (output of block l)", ylabel="subspace overlap", title="train vs eval shift overlap")
    ax1.legend(fontsize=7)
    ax2.plot(shifts.layer, shifts.mean_shift_cosine, marker="o", ms=3, label="mean-shift cosine")
    ax2.plot(shifts.layer, shifts.pair_rho, marker="s", ms=3, label="pair ρ (prompt sim vs shift sim)")
    ax2.axhline(0, color="grey", lw=0.8)
    ax2.set(xlabel="layer (output of block l)", title="shift similarity")
    ax2.legend(fontsize=7)
    summary = {
        "findings": findings,
        "control": "random k-subspaces and random vectors of the same dimension; question-label permutation",
        "uncertainty": "z-scores against the random-control distribution; permutation p-values",
        "best": {k: (float(v) if isinstance(v, (int, float, np.floating, np.integer)) else v)
                 for k, v in best.items()},
        "inputs": inputs,
    }
    return AnalysisResult("overlap", sweep, summary, fig, {"shifts": shifts})


def activation_overlap(model: str, adapter: str, train: str = "builtin:risky-finance", eval: str = "builtin:em-core",
                       layers: str | Sequence[int] = "all", ks: Sequence[int] = (1, 2, 4, 8), n_train: int = 64,
                       n_subsets: int = 8, n_random: int = 200, n_permutations: int = 1000, batch_size: int = 8,
                       backend: str = "hooks", seed: int = 0) -> AnalysisResult:
    """Extract last-prompt activations of training and eval prompts before and after fine-tuning, then compare.

    ``model`` is the base (alias, hub id or directory), ``adapter`` the fine-tuned LoRA checkpoint;
    ``train`` a chat dataset (its prompts are used), ``eval`` a question set (every paraphrase).
    """
    from emprobe.models import load_model
    from emprobe.probes import load_prompts

    base, tuned = load_model(model), load_model(model, adapter=adapter)
    return overlap_models(base, tuned, load_prompts(train, limit=n_train), load_prompts(eval), layers, ks, n_subsets,
                          n_random, n_permutations, batch_size, backend, seed,
                          {"model": model, "adapter": str(adapter), "train": train, "eval": eval})


def overlap_models(base, tuned, train_ps, eval_ps, layers: str | Sequence[int] = "all", ks: Sequence[int] = (1, 2, 4, 8),
                   n_subsets: int = 8, n_random: int = 200, n_permutations: int = 1000, batch_size: int = 8,
                   backend: str = "hooks", seed: int = 0, inputs: dict | None = None) -> AnalysisResult:
    """:func:`activation_overlap` on loaded models (``tuned`` = base + adapter) and prompt sets."""
    from emprobe.probes import extract_activations

    def acts(lm, ps) -> tuple[np.ndarray, list[int]]:
        st = extract_activations(lm, ps, layers, positions=["last_prompt"], backend=backend, batch_size=batch_size)
        return st.get("last_prompt").numpy(), st.layers

    (bt, layer_ids), (be, _) = acts(base, train_ps), acts(base, eval_ps)
    (tt, _), (te, _) = acts(tuned, train_ps), acts(tuned, eval_ps)
    sweep, shifts = overlap_tables(bt, tt, be, te, layer_ids, [it.question_id for it in eval_ps], ks, n_subsets,
                                   n_random, n_permutations, seed)
    inputs = {**(inputs or {}), "n_train": len(train_ps), "n_eval": len(eval_ps), "train_sha256": train_ps.sha256,
              "eval_sha256": eval_ps.sha256, "layers": layer_ids, "ks": list(ks), "position": "last_prompt"}
    return summarise_overlap(sweep, shifts, base.d_model, inputs)
