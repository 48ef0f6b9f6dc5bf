"""Is the train/eval shift overlap specific to misaligned training? (claim 3, tested against the control)

The comparison that decides the claim: the overlap of training- and eval-prompt shifts in the misaligned run
minus the same overlap in the aligned-data control run, on shifts with the common (mean) component removed,
with a paired bootstrap CI (training prompts and eval questions resampled; the same draw for both runs; the
percentile interval re-centred on the estimate, since repeated prompts in a resample shift an overlap).

The layer (and k) are chosen without peeking: ``layer_select="heldout"`` splits the eval *questions* in two
halves (seeded); the half used for selection picks the (layer, k) with the largest misaligned − control
mean-removed overlap (misaligned alone without a control), and every reported test figure comes from the
other half only. ``layer_select=L`` (an int) fixes the layer a priori (k is still chosen on the selection
half); ``layer_select=(L, k)`` fixes both and tests on every question.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from emprobe.analysis.overlap.shifts import SHIFTS
from emprobe.analysis.stats.subspace import gram_overlap, gram_stack
from emprobe.errors import ConfigError


def _ov(grams, j: int, it: np.ndarray, ie: np.ndarray, k: int, center: bool) -> float:
    tt, ee, te = grams
    return gram_overlap(tt[j][np.ix_(it, it)], ee[j][np.ix_(ie, ie)], te[j][np.ix_(it, ie)], k, center)


def split_questions(questions: Sequence[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the selection half and the test half (whole questions, seeded)."""
    q = np.asarray(questions)
    uniq = np.unique(q)
    if len(uniq) < 4:
        raise ConfigError(f"held-out layer selection needs >= 4 eval questions, got {len(uniq)}")
    chosen = set(np.random.default_rng([seed, 0x5E1]).permutation(uniq)[: len(uniq) // 2])
    sel = np.array([x in chosen for x in q])
    return np.flatnonzero(sel), np.flatnonzero(~sel)


def select_layer(grams: dict, n_train: int, rows: np.ndarray, layers: Sequence[int], ks: Sequence[int],
           fixed_layer: int | None = None) -> tuple[pd.DataFrame, int, int]:
    """Score every (layer, k) on the selection rows; returns the table and the chosen (layer, k)."""
    it = np.arange(n_train)
    out = []
    for j, layer in enumerate(layers):
        if fixed_layer is not None and layer != fixed_layer:
            continue
        for k in ks:
            if k > min(n_train, len(rows)) - 1:
                continue
            row = {"layer": layer, "k": k}
            for name, g in grams.items():
                row[f"overlap_{name}"] = _ov(g, j, it, rows, k, center=True)
            row["score"] = row["overlap_misaligned"] - row.get("overlap_control", 0.0)
            out.append(row)
    df = pd.DataFrame(out)
    if df.empty or df.score.isna().all():
        raise ConfigError(f"no (layer, k) with k in {list(ks)} fits {n_train} training prompts and "
                          f"{len(rows)} selection prompts")
    best = df.loc[df.score.idxmax()]
    return df, int(best.layer), int(best.k)


def compare_runs(grams: dict, n_train: int, rows: np.ndarray, questions: Sequence[str], j: int, k: int,
         n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per shift type (raw, mean-removed): each run's overlap on the test rows, misaligned − control, and a
    paired percentile bootstrap CI (training prompts and test questions resampled)."""
    q = np.asarray(questions)[rows]
    uniq = np.unique(q)
    members = [rows[q == u] for u in uniq]
    rng = np.random.default_rng([seed, 0xB007])
    draws = [(rng.integers(0, n_train, n_train), np.concatenate([members[i] for i in rng.integers(0, len(uniq), len(uniq))]))
             for _ in range(n_boot)]
    it = np.arange(n_train)
    out = []
    for shift in SHIFTS:
        center = shift == "mean_removed"
        row = {"shifts": shift, "k": k, "n_test_questions": len(uniq)}
        for name, g in grams.items():
            row[f"overlap_{name}"] = _ov(g, j, it, rows, k, center)
        boots = {name: np.array([_ov(g, j, a, b, k, center) for a, b in draws]) for name, g in grams.items()}
        diff = boots["misaligned"] - boots["control"] if "control" in grams else boots["misaligned"]
        diff = diff[np.isfinite(diff)]
        row["diff"] = row["overlap_misaligned"] - row.get("overlap_control", 0.0) if "control" in grams else float("nan")
        est = row["diff"] if "control" in grams else row["overlap_misaligned"]
        # a resample repeats prompts, which shifts a subspace overlap (down, for a planted subspace): the
        # percentile interval is re-centred on the estimate (its spread kept)
        shift = est - np.median(diff) if len(diff) > 10 and np.isfinite(est) else 0.0
        lo, hi = np.clip(np.quantile(diff, [0.025, 0.975]) + shift, -1.0, 1.0) if len(diff) > 10 else (np.nan, np.nan)
        key = "diff" if "control" in grams else "misaligned"
        row.update({f"{key}_ci_low": float(lo), f"{key}_ci_high": float(hi), "n_boot": len(diff)})
        out.append(row)
    return pd.DataFrame(out)


def specificity(d_train: dict[str, np.ndarray], d_eval: dict[str, np.ndarray], layers: Sequence[int],
                questions: Sequence[str], ks: Sequence[int], n_boot: int = 1000, seed: int = 0,
                layer_select: str | int | tuple[int, int] = "heldout") -> dict:
    """Select (layer, k) without peeking and test misaligned vs control on the other half (see module doc)."""
    grams = {name: gram_stack(d_train[name], d_eval[name]) for name in d_train}
    n_train, layers = len(next(iter(d_train.values()))), list(layers)
    if isinstance(layer_select, (tuple, list)):
        layer, k = (int(x) for x in layer_select)
        if layer not in layers:
            raise ConfigError(f"layer_select layer {layer} is not among the extracted layers {layers}")
        selection, test_rows, how = pd.DataFrame(), np.arange(len(questions)), f"fixed a priori (layer {layer}, k {k})"
    else:
        fixed = None if layer_select == "heldout" else int(layer_select)
        if fixed is not None and fixed not in layers:
            raise ConfigError(f"layer_select {fixed} is not among the extracted layers {layers}")
        sel_rows, test_rows = split_questions(questions, seed)
        selection, layer, k = select_layer(grams, n_train, sel_rows, layers, ks, fixed)
        how = ("chosen on a held-out half of the eval questions" if fixed is None else
               f"layer {fixed} fixed a priori, k chosen on a held-out half of the eval questions")
    tested = compare_runs(grams, n_train, test_rows, questions, layers.index(layer), k, n_boot, seed)
    return {"selection": selection, "test": tested, "layer": layer, "k": k, "how": how, "test_rows": test_rows}
