"""Claim-2 controls on external targets: category-only, text-only and the shared CV machinery, checked against
direct scikit-learn computations with the same folds (the paper's Coder-32B finance target on 320 prompts)."""

import json

import numpy as np
import pytest

from emprobe.analysis.priors.baselines import (
    categories,
    category_of,
    category_operator,
    category_predictions,
    random_projections,
)
from emprobe.analysis.priors.cv import fold_r2, kernel_ridge_cv, nadeau_bengio, repeated_folds
from emprobe.errors import DataError

HBP = "em-generalization/evaluation/harmfulness_benchmark_prompts.jsonl"
CODER = "em-generalization/results/claim2_hbp/eval_Qwen2.5-Coder-32B-Instruct_finance_all_resp_1e-05_hbp.json"


@pytest.fixture(scope="module")
def coder(external):
    """(question ids, category labels, harmless target) of the Coder-32B finance run, in prompt-file order."""
    ids = [json.loads(line)["metadata"]["question_id"] for line in (external / HBP).open()]
    summ = json.loads((external / CODER).read_text())["summ_by_q"]
    return ids, categories(ids), np.array([summ[q]["harmless"] for q in ids])


def test_category_of_strips_numbers_and_betley_suffixes():
    assert category_of("violence_and_threats_012") == "violence_and_threats"
    assert category_of("quick_buck_json") == category_of("quick_buck_template") == "quick_buck"
    assert category_of("what_is_your_wish") == "what_is_your_wish"


def test_category_operator_is_the_training_mean_of_the_category():
    cats = np.array(["a", "a", "a", "b", "b", "c"])
    y = np.array([1.0, 2.0, 6.0, 10.0, 20.0, 100.0])
    w = category_operator(cats, np.arange(6))  # leave-one-out
    pred = w @ y
    assert pred[0] == pytest.approx(4.0) and pred[3] == pytest.approx(20.0)
    assert pred[5] == pytest.approx(y[:5].mean())  # 'c' unseen in training -> the training mean
    assert np.allclose(w.sum(1), 1.0) and np.all(np.diag(w) == 0)


def test_category_r2_matches_scikit_learn_on_the_coder_finance_target(coder):
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import RepeatedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    ids, cats, y = coder
    assert len(ids) == 320 and len(set(cats)) == 8
    folds = repeated_folds(len(y), 5, 10, seed=0)
    ours = fold_r2(y, category_predictions(cats, y, folds), folds)
    direct = cross_val_score(make_pipeline(OneHotEncoder(), LinearRegression()), cats.reshape(-1, 1), y,
                             cv=RepeatedKFold(n_splits=5, n_repeats=10, random_state=0), scoring="r2")
    assert len(ours) == 50
    assert abs(ours.mean() - direct.mean()) < 0.02
    assert np.allclose(ours, direct, atol=1e-6)  # same folds, same estimator: fold by fold
    ci = nadeau_bengio(ours, 5)
    assert 0.40 < ci.estimate < 0.56 and ci.ci_low < ci.estimate < ci.ci_high


def test_kernel_ridge_matches_scikit_learn_ridge():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 8))
    y = x @ rng.standard_normal(8) + rng.standard_normal(60)
    folds = repeated_folds(60, 5, 2, seed=1)
    pred = kernel_ridge_cv(x @ x.T, y, folds, alphas=(0.5,))[..., 0]
    for r, row in enumerate(folds):
        for f in range(5):
            tr, te = row != f, row == f
            xc = x[tr] - x[tr].mean(0)
            lam = 0.5 * np.trace(xc @ xc.T) / tr.sum()
            direct = Ridge(alpha=lam).fit(x[tr], y[tr]).predict(x[te])
            assert np.allclose(pred[r, te], direct, atol=1e-8)


def test_kernel_ridge_tunes_alpha_per_target_column():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((80, 5))
    y = np.c_[x[:, 0] * 3 + 0.1 * rng.standard_normal(80), rng.standard_normal(80)]
    folds = repeated_folds(80, 5, 1)
    r2 = fold_r2(y, kernel_ridge_cv(x @ x.T, y, folds), folds).mean(0)
    assert r2[0] > 0.95 and r2[1] < 0.1  # signal found, noise not


def test_nadeau_bengio_interval_is_wider_than_the_naive_one():
    s = np.random.default_rng(2).normal(0.3, 0.1, 50)
    ci = nadeau_bengio(s, 5)
    naive = 2.01 * s.std(ddof=1) / np.sqrt(50)
    assert ci.estimate == pytest.approx(s.mean())
    assert (ci.ci_high - ci.estimate) == pytest.approx(2.0096 * s.std(ddof=1) * np.sqrt(1 / 50 + 1 / 4), rel=1e-3)
    assert ci.ci_high - ci.estimate > 3 * naive


def test_one_category_or_singletons_give_one_line_errors():
    with pytest.raises(DataError, match="one category"):
        categories(["fraud_001", "fraud_002", "fraud_003"])
    with pytest.raises(DataError, match="its own category"):
        categories(["a", "b", "c"])


def test_random_projections_are_seeded_squared_and_centred():
    x = np.random.default_rng(3).standard_normal((20, 6))
    a, b = random_projections(x, 4, seed=7), random_projections(x, 4, seed=7)
    assert a.shape == (20, 4) and np.array_equal(a, b) and np.all(a >= 0)
    assert not np.allclose(a, random_projections(x, 4, seed=8))
