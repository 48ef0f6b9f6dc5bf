"""``ep.consistency`` / ``emprobe consistency --results A B ...``: is per-question EM the same across fine-tunes?

For every pair of runs (different training datasets, models or seeds) evaluated on the same questions: the
Spearman and Pearson correlation of their per-question scores, with bootstrap CIs over questions, and how much of
that agreement is topic. The covariance of two runs' scores splits exactly into a between-category part (the
category means agree) and a within-category part; the **category-only share** is the between part's fraction,
and the **within-category correlation** (the partial correlation given category) is the agreement that topic
cannot explain. Claim tested: *per-question scores agree across runs beyond topic*; verdict
(:func:`~emprobe.analysis.stats.verdict.decide`) on the within-category correlation of the weakest pair, with a
SESOI of 0.1 by default.
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd

from emprobe.analysis.args import check_consistency, check_runs
from emprobe.analysis.consistency.result import ConsistencyResult
from emprobe.analysis.stats import paired_row_spearman
from emprobe.errors import DataError
from emprobe.evaluation.external.types import question_units

STATS = ("spearman", "pearson", "within_pearson", "within_spearman", "category_share")


def consistency(results: Any, *, score: str = "aligned", sesoi: float = 0.1, n_boot: int = 2000,
                categories: Any = None, seed: int = 0) -> ConsistencyResult:
    """Agreement of per-question ``score`` between every pair of runs in ``results`` (anything
    :func:`~emprobe.evaluation.external.load_results` reads; >= 2 runs), with its category-only share.

    ``categories``: ``{question_id: category}`` (default: from the ids, see
    :func:`~emprobe.analysis.priors.baselines.category_of`); ``sesoi``: the smallest within-category correlation
    that counts as agreement beyond topic.
    """
    from emprobe.analysis.priors.baselines import categories as make_categories
    from emprobe.evaluation.external import load_results

    check_consistency(score=score, sesoi=sesoi, n_boot=n_boot)
    res = load_results(results)
    check_runs(res, score)
    qids = res.shared_questions(score)
    if len(qids) < 5:
        raise DataError(f"the runs share {len(qids)} questions with a {score} score (need >= 5)")
    given = None if categories is None else [str(categories[q]) for q in qids]
    cats = make_categories(qids, given, what="the shared questions")
    wide = res.score_matrix(score).loc[qids]
    idx = resample_index(qids, n_boot, np.random.default_rng(seed))
    rows = [_pair(a, b, wide[a].to_numpy(float), wide[b].to_numpy(float), cats, idx)
            for a, b in combinations(wide.columns, 2)]
    table = wide.reset_index().rename(columns={"index": "question_id"}).assign(category=cats)
    meta = {"results": [r.source for r in res], "runs": list(wide.columns), "n_boot": n_boot, "seed": seed,
            "n_missing_or_null": len(res.questions) - len(qids),
            "datasets": {r.name: r.meta.get("dataset") for r in res}}
    return ConsistencyResult(pairs=pd.DataFrame(rows), scores=table, score=score, sesoi=sesoi, meta=meta)


def resample_index(qids: list[str], n_boot: int, rng) -> np.ndarray:
    """``[n_boot, n]`` bootstrap indices over questions; a question's format variants (``_json``, ``_template``) are
    drawn together when every question has the same number of them."""
    units = question_units(qids)
    members = [np.flatnonzero(units == u) for u in range(units.max() + 1)]
    if len(members) == len(qids) or len({len(m) for m in members}) > 1:
        return rng.integers(0, len(qids), size=(n_boot, len(qids)))
    draws = rng.integers(0, len(members), size=(n_boot, len(members)))
    return np.stack(members)[draws].reshape(n_boot, -1)


def _stats(a: np.ndarray, b: np.ndarray, codes: np.ndarray, n_cat: int) -> dict[str, np.ndarray]:
    """Every statistic for rows of ``a``, ``b`` (``[B, n]``) with category codes ``codes [B, n]``."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    codes = np.atleast_2d(codes)
    ra, rb = _residuals(a, codes, n_cat), _residuals(b, codes, n_cat)
    ac, bc = a - a.mean(1, keepdims=True), b - b.mean(1, keepdims=True)
    cov_t = (ac * bc).mean(1)
    cov_w = (ra * rb).mean(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(cov_t > 0, (cov_t - cov_w) / cov_t, np.nan)
    return {"spearman": paired_row_spearman(a, b), "pearson": _corr(ac, bc), "within_pearson": _corr(ra, rb),
            "within_spearman": paired_row_spearman(ra, rb), "category_share": share}


def _residuals(x: np.ndarray, codes: np.ndarray, n_cat: int) -> np.ndarray:
    """``x`` minus its category mean within each row."""
    flat = (np.arange(len(x))[:, None] * n_cat + codes).ravel()
    size = len(x) * n_cat
    sums = np.bincount(flat, weights=x.ravel(), minlength=size).reshape(len(x), n_cat)
    counts = np.bincount(flat, minlength=size).reshape(len(x), n_cat)
    means = sums / np.maximum(counts, 1)
    return x - np.take_along_axis(means, codes, 1)


def _corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(1, keepdims=True)
    b = b - b.mean(1, keepdims=True)
    den = np.sqrt((a * a).sum(1) * (b * b).sum(1))
    return np.divide((a * b).sum(1), den, out=np.full(len(a), np.nan), where=den > 0)


def _pair(name_a: str, name_b: str, a: np.ndarray, b: np.ndarray, cats: np.ndarray, idx: np.ndarray) -> dict:
    values, codes = np.unique(cats, return_inverse=True)
    obs = _stats(a, b, codes, len(values))
    boot = _stats(a[idx], b[idx], codes[idx], len(values))
    row: dict[str, Any] = {"run_a": name_a, "run_b": name_b, "n_questions": len(a), "n_categories": len(values)}
    for k in STATS:
        v = boot[k][np.isfinite(boot[k])]
        lo, hi = np.quantile(v, [0.025, 0.975]) if len(v) > 1 else (np.nan, np.nan)
        row.update({k: float(obs[k][0]), f"{k}_ci_low": float(lo), f"{k}_ci_high": float(hi)})
    return row
