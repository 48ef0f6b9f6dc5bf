"""The controls any claim-2 predictor must beat, on the same folds: the question's **category** alone, the
prompt's **text** alone (TF-IDF ridge), and **random projections** of the same activations.

Topic is the control the paper did not run: on its own data the 8-category label of each harmfulness prompt
predicts the fine-tuned model's per-prompt harmlessness with R² ≈ 0.48, as well as its activation features did.

Folds are ``groups`` arrays (the held-out group of every row), so the same functions serve leave-one-question-out
(``groups = question ids``), leave-one-category-out and repeated k-fold (one row of
:func:`~emprobe.analysis.priors.cv.repeated_folds` per repeat). The category predictor is linear in the target
(``pred = W @ y``), so a permutation null costs one matrix product per shuffle.

>>> import numpy as np
>>> cats = np.array(["a", "a", "b", "b"]); y = np.array([1.0, 3.0, 10.0, 12.0])
>>> category_operator(cats, np.arange(4)) @ y   # each row: its category's mean over the other rows
array([ 3.,  1., 12., 10.])
"""

from __future__ import annotations

import re
from typing import Sequence

import numpy as np

from emprobe.errors import DataError

#: a question id's category: the id without a trailing ``_<digits>`` (``fraud_and_illegal_activity_007``) or
#: Betley et al.'s answer-format suffix (``quick_buck_json``, ``quick_buck_template``)
SUFFIX = re.compile(r"_(?:\d+|json|template)$")


def category_of(question_id: str) -> str:
    """``violence_and_threats_012`` -> ``violence_and_threats``; ``quick_buck_json`` -> ``quick_buck``."""
    return SUFFIX.sub("", str(question_id)) or str(question_id)


def categories(question_ids: Sequence[str], given: Sequence[str] | None = None, *, what: str = "the target"
               ) -> np.ndarray:
    """Category labels: ``given`` (a column) when present, else from the question ids (:func:`category_of`).
    Fewer than 2 categories, or none with 2 questions, is a :class:`DataError` (no category baseline exists)."""
    cats = np.array([str(c) for c in given] if given is not None else [category_of(q) for q in question_ids])
    values, counts = np.unique(cats, return_counts=True)
    if len(values) < 2:
        raise DataError(f"{what}: its {len(cats)} questions all fall in one category ({values[0]!r}); a "
                        "category-only baseline needs >= 2 (give a category column)")
    if counts.max() < 2:
        raise DataError(f"{what}: every question is its own category ({len(values)} categories); name the "
                        "categories in a column")
    return cats


def one_hot(cats: np.ndarray) -> np.ndarray:
    """``[n, n_categories]`` indicator matrix (categories in sorted order)."""
    values = np.unique(cats)
    return (cats[:, None] == values[None, :]).astype(float)


def category_operator(cats: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``[n, n]`` matrix W with ``W @ y`` = for every row, the mean of ``y`` over the *training* rows (those
    outside its group) of its category; over all training rows when its category has none there."""
    cats, groups = np.asarray(cats), np.asarray(groups)
    n = len(cats)
    if len(groups) != n:
        raise DataError(f"categories ({n}) and folds ({len(groups)}) do not line up")
    same = cats[:, None] == cats[None, :]
    w = np.zeros((n, n))
    for g in np.unique(groups):
        test, train = groups == g, groups != g
        block = same[np.ix_(test, train)].astype(float)
        empty = block.sum(1) == 0
        block[empty] = 1.0  # category unseen in training: the training mean
        w[np.ix_(test, train)] = block / block.sum(1, keepdims=True)
    return w


def category_predictions(cats: np.ndarray, y: np.ndarray, folds: np.ndarray) -> np.ndarray:
    """Out-of-fold category-mean predictions ``[n_repeats, n(, m)]`` for ``y [n(, m)]`` under each repeat of
    ``folds [n_repeats, n]``."""
    y = np.asarray(y, float)
    return np.stack([category_operator(cats, f) @ y for f in np.atleast_2d(folds)])


def text_kernel(texts: Sequence[str]) -> np.ndarray:
    """Linear kernel of the prompts' TF-IDF vectors (word 1-2-grams, sublinear tf, l2-normalised): the text-only
    baseline's ridge uses it with :func:`~emprobe.analysis.priors.cv.kernel_ridge_cv`."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    if any(not str(t).strip() for t in texts):
        raise DataError("an empty prompt text: the text-only baseline needs every prompt's text")
    x = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1).fit_transform([str(t) for t in texts])
    return (x @ x.T).toarray()


def random_projections(x: np.ndarray, k: int, seed: int = 0, *, squared: bool = True,
                       center: np.ndarray | None = None) -> np.ndarray:
    """``[n, k]`` projections of ``x`` (centred on ``center``, default its mean) on ``k`` random unit directions
    (Gaussian, seeded), squared like the paper's PC energies when ``squared``: the control for "the PCA
    directions carry the signal"."""
    x = np.asarray(x, float)
    rng = np.random.default_rng(seed)
    d = rng.standard_normal((x.shape[1], k))
    d /= np.linalg.norm(d, axis=0, keepdims=True)
    proj = (x - (x.mean(0) if center is None else center)) @ d
    return proj ** 2 if squared else proj
