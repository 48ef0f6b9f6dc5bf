"""Direction estimators in the scikit-learn style: ``fit(X, y, pairs=None)`` -> ``coef_``, ``transform``, ``score``.

``X`` is ``[n, n_layers, d_model]`` (one column per stored layer; layer ``l`` = residual stream after
decoder block ``l``), ``y`` holds 1 for misaligned and 0 for aligned, and ``pairs`` names contrastive
pairs (same question and reference / persona index). Every estimator fits each layer independently
and orients its direction so that misaligned items project higher.

* :class:`MeanDiff` (``mean_diff``): mean(misaligned) - mean(aligned), the model-organisms recipe;
* :class:`PersonaDiff` (``persona``): mean over pairs of (misaligned-persona - aligned-persona), the
  persona-vectors recipe;
* :class:`LogisticProbe` (``logistic``): L2 logistic regression on standardised features, mapped back to
  the residual basis;
* :class:`PairedPCA` (``pca``): top principal component of the paired differences (of the symmetric set
  {+d, -d}, i.e. RepE's random sign flips in expectation), scaled by the mean difference along it;
* :class:`RandomDirection`: the control: Gaussian directions, sign-oriented on the training labels.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import einops
import numpy as np
from scipy.stats import rankdata

from emprobe.errors import ConfigError, DataError


def auroc(labels: Any, scores: Any) -> Any:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney U / n_pos n_neg, ties
    count one half), sklearn's ``roc_auc_score(y_true, y_score)`` order. ``scores`` may carry extra axes
    (``[n, ...]``, vectorised along axis 0): a 1-D ``scores`` gives a float, else an array of ``scores.shape[1:]``.
    The one AUROC of emprobe (``emprobe.analysis.stats`` re-exports it)."""
    y = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[:1] != y.shape:
        raise DataError(f"AUROC: {len(y)} labels for scores of shape {scores.shape}")
    if not np.all(np.isfinite(scores)):
        raise DataError("AUROC: NaN or inf in the scores")
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise DataError("AUROC needs both positive (misaligned) and negative (aligned) labels")
    ranks = rankdata(scores, axis=0)
    out = (ranks[y].sum(0) - n1 * (n1 + 1) / 2) / (n1 * n0)
    return float(out) if scores.ndim == 1 else out


def _check(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 2:
        X = X[:, None]
    if X.ndim != 3:
        raise DataError(f"X must be [n, n_layers, d_model], got shape {X.shape}")
    y = np.asarray(y).astype(float)
    if y.shape != (X.shape[0],):
        raise DataError(f"y has shape {y.shape}, expected ({X.shape[0]},)")
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError("labels must be 0 (aligned) or 1 (misaligned)")
    if y.min() == y.max():
        raise DataError(f"need both misaligned and aligned items to fit a direction (got only label {int(y[0])})")
    return X, y.astype(int)


def paired_differences(X: np.ndarray, y: np.ndarray, pairs: Any) -> np.ndarray:
    """``[m, L, D]``: per pair key, mean(misaligned members) - mean(aligned members); pairs lacking a side drop."""
    if pairs is None:
        raise ConfigError("this method needs pair keys (a references/personas contrast store, or question ids)")
    pairs = np.asarray(pairs, dtype=object)
    diffs = []
    for key in dict.fromkeys(pairs.tolist()):
        m = pairs == key
        pos, neg = m & (y == 1), m & (y == 0)
        if pos.any() and neg.any():
            diffs.append(X[pos].mean(0) - X[neg].mean(0))
    if len(diffs) < 1:
        raise DataError("no pair has both a misaligned and an aligned member")
    return np.stack(diffs)


@dataclass
class DirectionEstimator(ABC):
    """Base: subclasses implement ``_fit`` returning the raw ``[L, D]`` direction."""

    method: ClassVar[str] = "base"

    def fit(self, X: Any, y: Any, pairs: Any = None) -> "DirectionEstimator":
        X, y = _check(X, y)
        self.coef_ = np.asarray(self._fit(X, y, pairs), dtype=np.float64)
        self.n_features_in_ = X.shape[-1]
        self.n_layers_ = X.shape[1]
        return self

    @abstractmethod
    def _fit(self, X: np.ndarray, y: np.ndarray, pairs: Any) -> np.ndarray:
        """The ``[n_layers, d]`` direction per layer from labelled activations (each estimator's own rule)."""

    @property
    def unit_(self) -> np.ndarray:
        """The fitted direction normalised per layer, ``[L, D]``."""
        if not hasattr(self, "coef_"):
            raise ConfigError(f"{type(self).__name__} is not fitted yet; call fit(X, y) first")
        return self.coef_ / np.maximum(np.linalg.norm(self.coef_, axis=-1, keepdims=True), 1e-12)

    def transform(self, X: Any) -> np.ndarray:
        """Projections onto the unit direction: ``[n, L]``."""
        X = np.asarray(X, dtype=np.float64)
        X = X[:, None] if X.ndim == 2 else X
        return einops.einsum(X, self.unit_, "n layer d, layer d -> n layer")

    project = transform

    def score(self, X: Any, y: Any) -> np.ndarray:
        """Per-layer AUROC of the projections for labels ``y`` (``[L]``; higher = misaligned scores higher)."""
        return auroc(np.asarray(y), self.transform(X))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MeanDiff(DirectionEstimator):
    method: ClassVar[str] = "mean_diff"

    def _fit(self, X, y, pairs):
        return X[y == 1].mean(0) - X[y == 0].mean(0)


@dataclass
class PersonaDiff(DirectionEstimator):
    method: ClassVar[str] = "persona"

    def _fit(self, X, y, pairs):
        return paired_differences(X, y, pairs).mean(0)


@dataclass
class LogisticProbe(DirectionEstimator):
    """L2-regularised logistic regression per layer (``C`` = inverse regularisation strength)."""

    method: ClassVar[str] = "logistic"
    C: float = 1.0
    max_iter: int = 2000

    def _fit(self, X, y, pairs):
        from sklearn.linear_model import LogisticRegression

        out = np.empty(X.shape[1:])
        for j in range(X.shape[1]):
            x = X[:, j]
            mu, sd = x.mean(0), x.std(0) + 1e-6
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter).fit((x - mu) / sd, y)
            out[j] = clf.coef_[0] / sd
        return out


@dataclass
class PairedPCA(DirectionEstimator):
    method: ClassVar[str] = "pca"

    def _fit(self, X, y, pairs):
        d = paired_differences(X, y, pairs)  # [m, L, D]
        out = np.empty(X.shape[1:])
        for j in range(X.shape[1]):
            _, _, vt = np.linalg.svd(d[:, j], full_matrices=False)
            v = vt[0]
            along = d[:, j] @ v
            if along.mean() < 0:
                v, along = -v, -along
            out[j] = v * along.mean()
        return out


@dataclass
class RandomDirection(DirectionEstimator):
    """Control: ``n_directions`` Gaussian directions per layer; ``transform`` gives ``[n, n_directions, L]``."""

    method: ClassVar[str] = "random"
    n_directions: int = 20
    seed: int = 0

    def _fit(self, X, y, pairs):
        rng = np.random.default_rng(self.seed)
        r = rng.standard_normal((self.n_directions,) + X.shape[1:])
        proj = einops.einsum(X, r, "n layer d, r layer d -> n r layer")
        sign = np.sign(proj[y == 1].mean(0) - proj[y == 0].mean(0))  # [R, L]
        return r * np.where(sign == 0, 1, sign)[..., None]

    @property
    def unit_(self) -> np.ndarray:
        return self.coef_ / np.linalg.norm(self.coef_, axis=-1, keepdims=True)

    def transform(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return einops.einsum(X[:, None] if X.ndim == 2 else X, self.unit_, "n layer d, r layer d -> n r layer")


METHODS: dict[str, type[DirectionEstimator]] = {
    c.method: c for c in (MeanDiff, PersonaDiff, LogisticProbe, PairedPCA)
}


def make_estimator(method: str, **params: Any) -> DirectionEstimator:
    """An estimator by method name (``mean_diff``, ``persona``, ``logistic``, ``pca``)."""
    if method not in METHODS:
        raise ConfigError(f"unknown direction method {method!r}; use one of {', '.join(METHODS)}")
    cls = METHODS[method]
    allowed = set(cls.__dataclass_fields__)
    bad = [k for k in params if k not in allowed]
    if bad:
        raise ConfigError(f"method {method} takes no option {', '.join(bad)}"
                          + (f" (it takes {', '.join(sorted(allowed))})" if allowed else ""))
    return cls(**params)
