"""Nested leave-one-question-out ridge: the estimator behind ``explain``, vectorised over targets and designs.

Outer loop: each question ``i`` is held out in turn. Inside the fold, on the other ``n − 1`` questions only:

* every factor is standardised with the training rows' mean and sd (the held-out row never enters them);
* the stacked ``prior_prediction`` factor (optional) is rebuilt from the prior features: a kernel ridge on the
  training rows gives each training row its own leave-one-out prediction (exact, from the smoother's diagonal)
  and the held-out row the fit on all training rows — so no held-out target reaches its own training rows;
* a ridge (intercept unpenalised, penalty ``alpha × trace(XᵀX) / n_train``, i.e. ``alpha`` per standardised
  factor) predicts the held-out question.

The whole procedure is a function of ``(factors, prior kernel, y)``, so a permutation null that shuffles ``y``
(or one factor's rows, or the prior features' rows) reruns all of it: with the prior column linear in ``y``
(``prior[i] = P[i] @ y``) a batch of targets costs a few einsums. The prior's ridge penalty is
``prior_alpha × trace(K_c) / (n − 1)`` of the fold's centred kernel, held fixed within the fold (which makes the
inner leave-one-out exact).
"""

from __future__ import annotations

import numpy as np

CHUNK = 4e6  # elements of the [b, n, n, p] temporaries per chunk (~32 MB)


def prior_operators(kernels: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``[..., n, n, n]`` operators ``P`` (fold ``i``, row ``j``, source ``k``) from ``[..., n, n]`` linear kernels of
    the prior features: fold ``i``'s prior column is ``P[i] @ y``; ``P[i][:, i] = 0`` (the held-out target never
    enters), rows ``j ≠ i`` are leave-one-out predictions within the fold, row ``i`` the fold's prediction of ``i``."""
    k = np.asarray(kernels, np.float64)
    n = k.shape[-1]
    m = n - 1
    others = np.array([np.delete(np.arange(n), i) for i in range(n)])               # [n, m]
    kt = k[..., others[:, :, None], others[:, None, :]]                            # [..., n, m, m]
    row_mean, grand = kt.mean(-1), kt.mean((-1, -2))
    kc = kt - row_mean[..., :, None] - row_mean[..., None, :] + grand[..., None, None]
    lam = alpha * np.trace(kc, axis1=-2, axis2=-1) / m + 1e-12
    centre = np.eye(m) - 1.0 / m
    a = np.linalg.solve(kc + lam[..., None, None] * np.eye(m), np.broadcast_to(centre, kc.shape))  # (Kc+λ)⁻¹C
    hat = 1.0 / m + kc @ a                                                         # the fold's smoother
    h = np.diagonal(hat, axis1=-2, axis2=-1)
    loo = (hat - h[..., None] * np.eye(m)) / (1.0 - h)[..., None]
    k_it = np.take_along_axis(k, np.broadcast_to(others, k.shape[:-2] + others.shape), axis=-1)  # [..., n, m]
    r = k_it - k_it.mean(-1, keepdims=True) - row_mean + grand[..., None]            # centred kernel to row i
    held = 1.0 / m + np.einsum("...t,...ts->...s", r, a)                            # [..., n, m]
    out = np.zeros(k.shape[:-2] + (n, n, n))
    diag = np.arange(n)[:, None]
    out[..., diag[:, :, None], others[:, :, None], others[:, None, :]] = loo
    out[..., diag, diag, others] = held
    return out


def prior_column(ops: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``[b, n, n]`` prior column per fold (fold ``i``, row ``j``) for targets ``y [b, n]`` from ``ops``
    (``[n, n, n]`` shared, or ``[b, n, n, n]`` one per target)."""
    return np.einsum("ijk,bk->bij" if ops.ndim == 3 else "bijk,bk->bij", ops, y)


def fold_designs(factors: np.ndarray, b: int, prior: np.ndarray | None = None) -> np.ndarray:
    """``[b, n, n, p]`` per-fold designs: ``factors`` (``[n, p]`` shared, or ``[b, n, p]``) in every fold, with the
    per-fold ``prior`` column (``[b, n, n]``) appended."""
    f = np.asarray(factors, np.float64)
    n = f.shape[-2]
    x = np.broadcast_to(f[:, None] if f.ndim == 3 else f[None, None], (b, n, n, f.shape[-1]))
    return x if prior is None else np.concatenate([x, prior[..., None]], axis=-1)


def nested_predict(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``[b, n]`` held-out predictions from per-fold designs ``x [b, n, n, p]`` (fold, row, factor) and targets
    ``y [b, n]`` (or ``[n]``): standardisation and ridge fit on the fold's training rows only."""
    b, n, _, p = x.shape
    y = np.broadcast_to(np.asarray(y, np.float64), (b, n))
    out = np.empty((b, n))
    w = 1.0 - np.eye(n)                                                             # training rows per fold
    step = max(1, int(CHUNK // max(1, n * n * max(p, 1))))
    for s in range(0, b, step):
        xb, yb = x[s:s + step], y[s:s + step]
        ybar = (yb @ w.T) / (n - 1)                                                 # [c, n]
        if p == 0:
            out[s:s + step] = ybar
            continue
        mu = np.einsum("ij,cijp->cip", w, xb) / (n - 1)
        xc = xb - mu[:, :, None, :]
        sd = np.sqrt(np.einsum("ij,cijp->cip", w, xc ** 2) / (n - 1))
        ok = sd > 1e-9 * (1 + np.abs(mu))
        z = np.where(ok[:, :, None, :], xc / np.where(ok, sd, 1.0)[:, :, None, :], 0.0)
        zt = z * w[None, :, :, None]
        cxx = np.einsum("cijp,cijq->cipq", zt, z)
        cxy = np.einsum("cijp,cij->cip", zt, yb[:, None, :] - ybar[..., None])
        lam = alpha * np.trace(cxx, axis1=-2, axis2=-1) / (n - 1) + 1e-12
        beta = np.linalg.solve(cxx + lam[..., None, None] * np.eye(p), cxy[..., None])[..., 0]
        held = z[:, np.arange(n), np.arange(n)]                                     # [c, n, p]: row i in fold i
        out[s:s + step] = ybar + (held * beta).sum(-1)
    return out


def r2_rows(y: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Out-of-sample R² of each row of ``preds`` against its target row (``y [b, n]`` or ``[n]``)."""
    y = np.broadcast_to(np.asarray(y, np.float64), preds.shape)
    ss = ((y - y.mean(1, keepdims=True)) ** 2).sum(1)
    return 1.0 - np.divide(((preds - y) ** 2).sum(1), ss, out=np.ones(len(ss)), where=ss > 0)


def bootstrap_r2(y: np.ndarray, preds: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``[n_boot, k]``: R² of each of ``k`` fixed prediction rows (``preds [k, n]``) on the question resamples
    ``idx [n_boot, n]`` (the cross-validated predictions held fixed; the permutation nulls refit everything)."""
    yb = y[idx]                                                                     # [B, n]
    sst = ((yb - yb.mean(1, keepdims=True)) ** 2).sum(1)
    sse = ((preds[:, idx] - yb[None]) ** 2).sum(-1).T                               # [B, k]
    return 1.0 - np.divide(sse, sst[:, None], out=np.ones_like(sse), where=sst[:, None] > 0)
