"""Subspace overlap of activation shifts (paper §3): PCA bases, principal angles, random controls.

``overlap(U, V)`` is the mean squared cosine of the principal angles between two k-dimensional subspaces
of R^d: 1 when they coincide, 0 when orthogonal, and k/d in expectation for a random pair.
"""

from __future__ import annotations

import numpy as np

from emprobe.analysis.stats import zscore_vs_null
from emprobe.errors import ConfigError


def pca_basis(x: np.ndarray, k: int, center: bool = True) -> np.ndarray:
    """Orthonormal ``[d, k]`` basis of the top-k principal directions of the rows of ``x`` (``[n, d]``).

    With ``center=False`` the directions are those of the uncentred second moment (so a consistent shift
    of every row is captured by the first direction, as for activation deltas).
    """
    x = np.asarray(x, np.float64)
    if x.ndim != 2 or len(x) == 0:
        raise ConfigError(f"pca_basis needs a non-empty [n, d] array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ConfigError("NaN or inf in activations")
    if not 1 <= k <= min(x.shape):
        raise ConfigError(f"k={k} must be between 1 and min(n, d)={min(x.shape)}")
    if center:
        x = x - x.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return vt[:k].T


def principal_cosines(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Cosines of the principal angles between the column spaces of orthonormal ``u`` and ``v``."""
    return np.clip(np.linalg.svd(u.T @ v, compute_uv=False), 0.0, 1.0)


def overlap(u: np.ndarray, v: np.ndarray) -> float:
    """Mean squared cosine of the principal angles between two subspaces (orthonormal bases)."""
    return float(np.mean(principal_cosines(u, v) ** 2))


def control_rng(seed: int) -> np.random.Generator:
    """The random-control generator: its own stream, so it never replays data drawn with the same seed."""
    return np.random.default_rng([seed, 0x5EED_C7A1])


def random_basis(d: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """An orthonormal basis of a uniformly random k-dimensional subspace of R^d."""
    q, _ = np.linalg.qr(rng.standard_normal((d, k)))
    return q


def overlap_with_control(u: np.ndarray, v: np.ndarray, n_random: int = 200, seed: int = 0) -> dict[str, float]:
    """Overlap of ``u`` and ``v`` next to the overlap of ``u`` with random subspaces of ``v``'s size.

    Returns the observed overlap, the random mean and sd, the expectation k/d, and the z-score (how many
    random-control standard deviations the observed overlap lies above the random mean).
    """
    rng = control_rng(seed)
    d, k = v.shape
    null = np.array([overlap(u, random_basis(d, k, rng)) for _ in range(n_random)])
    obs = overlap(u, v)
    return {"overlap": obs, "random_mean": float(null.mean()), "random_sd": float(null.std(ddof=1)),
            "expected_random": u.shape[1] / d if u.shape[1] == k else float("nan"),
            "z": zscore_vs_null(obs, null)}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two vectors (0 if either is zero)."""
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def cosine_with_control(a: np.ndarray, b: np.ndarray, n_random: int = 1000, seed: int = 0) -> dict[str, float]:
    """Cosine of ``a`` and ``b`` next to the cosine of ``a`` with random vectors (|cos| ~ 1/sqrt(d))."""
    rng = control_rng(seed)
    null = np.array([cosine(a, rng.standard_normal(len(b))) for _ in range(n_random)])
    obs = cosine(a, b)
    return {"cosine": obs, "random_mean": float(null.mean()), "random_sd": float(null.std(ddof=1)),
            "z": zscore_vs_null(obs, null)}


def _top_scaled(g: np.ndarray, k: int) -> np.ndarray | None:
    """``[n, k]``: the top-k eigenvectors of the Gram matrix ``g`` divided by their singular values (so that
    ``X.T @ result`` is the orthonormal PCA basis of ``X``); ``None`` when ``X`` has rank < k."""
    vals, vecs = np.linalg.eigh(g)
    vals, vecs = vals[::-1][:k], vecs[:, ::-1][:, :k]
    if len(vals) < k or vals[-1] <= 1e-10 * max(vals[0], 1e-300):
        return None
    return vecs / np.sqrt(vals)


def gram_overlap(g_aa: np.ndarray, g_bb: np.ndarray, g_ab: np.ndarray, k: int, center: bool = False) -> float:
    """:func:`overlap` of the top-k PCA subspaces of the rows of ``A`` and ``B``, from Gram matrices alone
    (``A A^T``, ``B B^T``, ``A B^T``): with ``n`` rows ≪ ``d`` columns this is the cheap path for bootstraps
    (resampling rows = indexing the Gram matrices). ``center`` removes each set's mean row first.
    NaN when a set has rank below k."""
    if center:  # H G H without the products: subtract row and column means, add the grand mean back
        g_aa, g_bb, g_ab = (g - g.mean(0) - g.mean(1)[:, None] + g.mean() for g in (g_aa, g_bb, g_ab))
    ua, ub = _top_scaled(g_aa, k), _top_scaled(g_bb, k)
    if ua is None or ub is None:
        return float("nan")
    cos = np.clip(np.linalg.svd(ua.T @ g_ab @ ub, compute_uv=False), 0.0, 1.0)
    return float(np.mean(cos ** 2))


def random_overlap_null(d: int, k: int, n_random: int = 200, seed: int = 0) -> np.ndarray:
    """Overlaps of pairs of uniformly random k-subspaces of R^d (the null of any fixed pair, by rotation
    invariance, so it is drawn once per ``(d, k)``)."""
    rng = control_rng(seed)
    fixed = np.eye(d)[:, :k]
    return np.array([overlap(fixed, random_basis(d, k, rng)) for _ in range(n_random)])


def gram_stack(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-layer Gram matrices of ``[n, L, d]`` row sets: ``A A^T``, ``B B^T``, ``A B^T`` (each ``[L, n, n']``)."""
    a, b = np.asarray(a, np.float64).transpose(1, 0, 2), np.asarray(b, np.float64).transpose(1, 0, 2)
    return a @ a.transpose(0, 2, 1), b @ b.transpose(0, 2, 1), a @ b.transpose(0, 2, 1)
