"""Monitor: detect EM at the checkpoint level from direction drift alone (no generation).

Each checkpoint is described by drift features (e.g. the mean projection of eval-prompt activations on a
base-model misalignment direction, minus the same at step 0, per layer). The detector is scored by AUROC
against the evaluated EM label of the same checkpoints, and by a leave-one-run-out estimate in which a
logistic detector is fit on the other runs' checkpoints and scores the held-out run.
"""

from __future__ import annotations

import numpy as np

from emprobe.analysis.stats import auroc, permutation_pvalue
from emprobe.errors import ConfigError


def drift_auroc(drift: np.ndarray, labels: np.ndarray, n_permutations: int = 1000, seed: int = 0) -> dict[str, float]:
    """AUROC of a single drift score (higher drift = more EM) with a label-permutation p-value."""
    drift, labels = np.asarray(drift, float), np.asarray(labels).astype(bool)
    obs = auroc(labels, drift)
    rng = np.random.default_rng(seed)
    null = np.array([auroc(rng.permutation(labels), drift) for _ in range(n_permutations)])
    return {"auroc": obs, "p_permutation": permutation_pvalue(obs, null), "null_mean": float(null.mean())}


def leave_one_run_out(features: np.ndarray, labels: np.ndarray, runs: np.ndarray, c: float = 1.0) -> dict:
    """Pooled AUROC of held-out-run scores from a logistic detector fit on the other runs.

    Runs whose training complement has a single class are scored with the first feature (drift at the
    first layer) instead of a fitted detector; their count is reported.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, float)
    x = x[:, None] if x.ndim == 1 else x
    labels, runs = np.asarray(labels).astype(bool), np.asarray(runs)
    if len(np.unique(runs)) < 2:
        raise ConfigError("leave-one-run-out needs at least 2 runs")
    if not np.all(np.isfinite(x)):
        raise ConfigError("NaN or inf in drift features")
    scores = np.zeros(len(labels))
    fallback = 0
    for r in np.unique(runs):
        te, tr = runs == r, runs != r
        if len(np.unique(labels[tr])) < 2:
            scores[te] = x[te, 0]
            fallback += 1
            continue
        scaler = StandardScaler().fit(x[tr])
        clf = LogisticRegression(C=c).fit(scaler.transform(x[tr]), labels[tr])
        scores[te] = clf.decision_function(scaler.transform(x[te]))
    return {"auroc_loro": auroc(labels, scores), "scores": scores, "n_runs": int(len(np.unique(runs))),
            "n_fallback_runs": fallback}
