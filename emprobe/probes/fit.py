"""``fit_direction``: fit a direction per layer with grouped cross-validation and a random control.

Cross-validation is grouped by question (``GroupKFold`` on ``question_id``): no question is in both the
training and the test fold, so the held-out AUROC measures generalisation to unseen questions. Next to
each layer's AUROC (mean and standard deviation over folds) stands the same figure for random
directions sign-oriented on the same training folds (mean, and the 95th percentile over directions).
The best layer is the one with the highest mean held-out AUROC; the final direction is refit on all
labelled items.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emprobe.errors import ConfigError, DataError
from emprobe.probes.directions import Direction
from emprobe.probes.estimators import METHODS, RandomDirection, auroc, make_estimator
from emprobe.probes.sources import LabelRule
from emprobe.probes.store import ActivationStore

def cross_validate(X: np.ndarray, y: np.ndarray, groups: np.ndarray, pairs: np.ndarray | None, layers: Sequence[int],
                   method: str = "mean_diff", n_splits: int = 5, n_random: int = 20, seed: int = 0,
                   **params: Any):
    """Per-layer held-out AUROC (grouped K-fold) of ``method`` and of random directions.

    Returns a DataFrame with ``layer, auroc, auroc_std, n_folds, random_auroc, random_auroc_p95,
    random_auroc_std, n_train, n_test``. Folds whose test part holds one class only are skipped.
    """
    import pandas as pd
    from sklearn.model_selection import GroupKFold

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y).astype(int)
    uniq = list(dict.fromkeys(np.asarray(groups).tolist()))
    if len(uniq) < 2:
        raise ConfigError(f"grouped cross-validation needs at least 2 questions, got {len(uniq)}")
    k = min(n_splits, len(uniq))
    if k < 2:
        raise ConfigError(f"`n_splits` must be >= 2 (cross-validation folds), got {n_splits}")
    folds, rand_folds, n_tr, n_te = [], [], [], []
    for tr, te in GroupKFold(n_splits=k).split(X, y, groups):
        if len(set(y[tr])) < 2 or len(set(y[te])) < 2:
            continue
        est = make_estimator(method, **params).fit(X[tr], y[tr], None if pairs is None else pairs[tr])
        folds.append(est.score(X[te], y[te]))
        ctrl = RandomDirection(n_directions=n_random, seed=seed + len(folds)).fit(X[tr], y[tr])
        rand_folds.append(auroc(y[te], ctrl.transform(X[te])))  # [R, L]
        n_tr.append(len(tr))
        n_te.append(len(te))
    if not folds:
        raise DataError("no cross-validation fold has both misaligned and aligned items in train and test "
                        "(too few labelled questions)")
    a = np.stack(folds)            # [F, L]
    r = np.stack(rand_folds)       # [F, R, L]
    r_dir = r.mean(0)              # [R, L]: each random direction's fold-mean AUROC
    return pd.DataFrame({
        "layer": list(layers), "auroc": a.mean(0),
        "auroc_std": a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1]),
        "n_folds": len(a), "random_auroc": r_dir.mean(0), "random_auroc_p95": np.percentile(r_dir, 95, axis=0),
        "random_auroc_std": r_dir.std(0), "n_train": int(np.mean(n_tr)), "n_test": int(np.mean(n_te)),
    })


def store_labels(store: ActivationStore, label_rule: LabelRule | None = None) -> np.ndarray:
    """Labels of a store (NaN = unlabelled); a judged store is relabelled with ``label_rule`` if given."""
    if label_rule is None or store.contrast != "judged":
        return store.labels
    return np.array([np.nan if (lab := label_rule.label((r.get("meta") or {}).get("aligned"),
                                                        (r.get("meta") or {}).get("coherent"))) is None else lab
                     for r in store.records], dtype=float)


def fit_direction(store: Any, *, method: str = "mean_diff", position: str | None = None,
                  layers: str | Sequence[int] | None = None, label_rule: LabelRule | None = None, n_splits: int = 5,
                  n_random: int = 20, seed: int = 0, out: str | Path | None = None, overwrite: bool = False,
                  **params: Any) -> Direction:
    """Fit a misalignment :class:`Direction` per layer on the labelled items of ``store`` (an
    :class:`ActivationStore` or its directory) and cross-validate it; ``ep.fit_direction``.

    ``method``: ``mean_diff`` | ``persona`` | ``logistic`` | ``pca`` (``params`` go to its estimator, e.g.
    ``C``). ``position`` defaults to ``response_mean`` when stored, else ``last_prompt``; ``layers`` to every
    stored layer (layer ``l`` = residual stream after decoder block ``l``). ``persona`` needs a store extracted
    with ``contrast="personas"``; ``pca``/``persona`` pair items by their pair key (or question). The grouped
    cross-validated AUROC per layer against random directions is ``direction.metrics`` (as a table:
    ``direction.cv_table()``) and picks ``direction.best_layer``. With ``out`` the direction is written there
    (a direction emprobe wrote there before is replaced only with ``overwrite``).
    """
    if out is not None:
        from emprobe.outdir import check_out

        check_out(out, overwrite=overwrite)
    store = ActivationStore.load(store)
    if method not in METHODS:
        raise ConfigError(f"unknown `method` {method!r}; use one of {', '.join(METHODS)}")
    if method == "persona" and store.contrast != "personas":
        raise ConfigError("`method` persona needs a store extracted with contrast personas "
                          f"(this one: {store.contrast})")
    position = store.check_position(position or store.default_position())
    if store.contrast in ("references", "judged") and position != "response_mean":
        raise ConfigError(f"`position` {position} sees only the prompt, which aligned and misaligned answers share in "
                          f"a {store.contrast} store; use response_mean")
    layer_ids = store.resolve_layers(layers)
    y_all = store_labels(store, label_rule)
    keep = ~np.isnan(y_all)
    n1, n0 = int((y_all[keep] == 1).sum()), int((y_all[keep] == 0).sum())
    if n1 == 0 or n0 == 0:
        rule = f" under the label rule ({(label_rule or LabelRule()).describe()})" if store.contrast == "judged" else ""
        raise DataError(f"need both misaligned and aligned items{rule}: got {n1} misaligned, {n0} aligned "
                        f"of {store.n_prompts}")
    X = store.get(position, layer_ids).numpy()[keep]
    y = y_all[keep].astype(int)
    groups = store.groups[keep]
    pairs = np.array([p if p is not None else g for p, g in zip(store.pairs[keep], groups)], dtype=object)
    table = cross_validate(X, y, groups, pairs, layer_ids, method, n_splits, n_random, seed, **params)
    est = make_estimator(method, **params).fit(X, y, pairs)
    best = int(table.layer[int(np.argmax(table.auroc.to_numpy()))])
    source = {"store": str(store.path) if store.path else None, "activations_sha256": store.sha256,
              "prompt_set_sha256": store.prompt_hash, "model": store.model, "contrast": store.contrast,
              "prompts_source": store.manifest.get("prompts", {}).get("source"), "n_misaligned": n1, "n_aligned": n0,
              "n_unlabelled": int((~keep).sum()), "n_questions": int(len(set(groups.tolist()))),
              "question_ids": sorted({str(g) for g in groups.tolist()})}  # what a causal check must not score
    if store.contrast == "judged":
        source["label_rule"] = (label_rule or LabelRule()).__dict__
    direction = Direction(method, list(layer_ids), est.coef_, position, source, best, table.to_dict("records"),
                          {**est.get_params(), "n_splits": n_splits, "n_random": n_random, "seed": seed})
    if out is not None:
        direction.save(out, overwrite=overwrite)
    return direction

