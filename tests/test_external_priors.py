"""Claim 2 on an external target: the paper's estimator on a constructed target with a known answer (and equal to
scikit-learn's GridSearchCV pipeline), planted data both ways plus a weak case, the whole path with a real model
on the paper's Coder finance target, and bad inputs as one line."""

import json

import numpy as np
import pytest

import emprobe as ep
from emprobe.analysis.priors.cv import fold_r2, nadeau_bengio, repeated_folds
from emprobe.analysis.priors.external import planted_targets, priors_from_features
from emprobe.analysis.priors.paper import LASSO_ALPHAS, lasso_cv, pc_energies
from emprobe.errors import ConfigError, DataError

HBP = "em-generalization/evaluation/harmfulness_benchmark_prompts.jsonl"
CODER = "em-generalization/results/claim2_hbp/eval_Qwen2.5-Coder-32B-Instruct_finance_all_resp_1e-05_hbp.json"
WORDS = "alpha beta gamma delta money risk market stock plan save invest fund cash loan rate debt".split()


def planted(n, beta, seed, *, n_cat=4, noise=5.0, junk=20):
    """Activations that encode the category and a within-category signal (scaled by ``beta``) plus junk dims."""
    rng = np.random.default_rng(seed)
    idx = np.arange(n) % n_cat
    cats = np.array([f"topic{c}" for c in idx])
    s = rng.standard_normal(n)
    y = rng.normal(0, 10, n_cat)[idx] + beta * s + rng.normal(0, noise, n)
    onehot = (idx[:, None] == np.arange(n_cat)[None]).astype(float)
    x = np.c_[3 * onehot + 0.3 * rng.standard_normal((n, n_cat)), s + 0.3 * rng.standard_normal(n),
              rng.standard_normal((n, junk))]
    texts = [f"{c} " + " ".join(rng.choice(WORDS, 6)) for c in cats]
    return x, y, [f"{c}_{i:03d}" for i, c in enumerate(cats)], cats, texts


def test_paper_estimator_recovers_a_known_r2():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((320, 64)) * np.linspace(3, 0.5, 64)
    f = pc_energies(x, x, 20)
    sig = (f[:, 2] - f[:, 2].mean()) / f[:, 2].std()
    y = 10 * sig + 10 * rng.standard_normal(320)  # R² of the signal: 100 / 200 = 0.5
    folds = repeated_folds(320, 5, 2, seed=0)
    pred = lasso_cv(f, np.c_[y, rng.permutation(y)], folds)
    r2 = fold_r2(np.c_[y, rng.permutation(y)], pred, folds)
    ci = nadeau_bengio(r2[:, 0], 5)
    assert 0.42 < ci.estimate < 0.56 and ci.ci_low < 0.5 < ci.ci_high
    assert r2[:, 1].mean() < 0.02  # a shuffled target: nothing


def test_paper_lasso_equals_the_scikit_learn_grid_search_pipeline():
    from sklearn.linear_model import Lasso
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(1)
    f = pc_energies(rng.standard_normal((150, 30)), rng.standard_normal((150, 30)), 15)
    y = f[:, 0] * 3 + rng.standard_normal(150)
    folds = repeated_folds(150, 5, 1, seed=3)
    ours = lasso_cv(f, y, folds, seed=0)[0, :, 0]
    est = GridSearchCV(Pipeline([("scaler", StandardScaler()), ("model", Lasso(max_iter=200_000, tol=1e-3))]),
                       {"model__alpha": list(LASSO_ALPHAS)}, cv=KFold(5, shuffle=True, random_state=0), scoring="r2")
    for k in range(5):
        tr, te = folds[0] != k, folds[0] == k
        assert np.allclose(est.fit(f[tr], y[tr]).predict(f[te]), ours[te], atol=1e-6)


def test_loo_penalty_choice_matches_ridgecv():
    from sklearn.linear_model import RidgeCV

    from emprobe.analysis.priors.cv import RIDGE_ALPHAS, _eigen, _loo_choice

    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 30))
    y = x[:, :3] @ [1.0, 2.0, 3.0] + 3 * rng.standard_normal(100)
    train = np.arange(80)
    e = _eigen(x @ x.T, np.ones((100, 1)), train)
    ours = RIDGE_ALPHAS[_loo_choice(e, y[train][:, None], RIDGE_ALPHAS)[0]]
    sk = RidgeCV(alphas=np.array(RIDGE_ALPHAS) * e["scale"]).fit(x[train], y[train]).alpha_ / e["scale"]
    assert ours == pytest.approx(sk)


def test_planted_signal_beyond_topic_is_supported():
    x, y, q, c, t = planted(200, 8.0, 0)
    r = priors_from_features(x, y, q, c, t, n_permutations=20, n_random=1, n_repeats=4, n_power=10)
    assert r.verdict().verdict == "supported", r.verdict()
    assert r.margin("category+activations", "category").ci_low > 0.05 and r.p_permutation < 0.1


def test_topic_only_with_many_questions_is_not_supported():
    x, y, q, c, t = planted(1000, 0.0, 0, junk=2)
    r = priors_from_features(x, y, q, c, t, n_permutations=0, n_random=1, n_repeats=2, n_power=20)
    v = r.verdict()
    assert v.verdict == "not supported", v
    assert r.power_miss <= 0.1 and r.margin("category+activations", "category").ci_high < 0.05
    assert r.findings()[0].startswith(("Category alone", "Text alone"))  # the control is said first


def test_a_weak_signal_on_few_questions_is_inconclusive():
    x, y, q, c, t = planted(60, 4.0, 1, noise=8.0)
    r = priors_from_features(x, y, q, c, t, n_permutations=0, n_random=1, n_repeats=4, n_power=20)
    assert r.verdict().verdict == "inconclusive", r.verdict()
    assert r.power_miss > 0.1 or r.margin("category+activations", "category").ci_high >= 0.05


def test_planted_targets_carry_the_sesoi_beyond_category():
    x, y, q, c, t = planted(400, 0.0, 2)
    ys = planted_targets(x, y, np.asarray(c), 0.2, 5, np.random.default_rng(0))
    for j in range(5):
        m = np.array([ys[np.asarray(c) == k, j].mean() for k in np.asarray(c)])
        resid_share = ((ys[:, j] - m) ** 2).sum() / ((ys[:, j] - ys[:, j].mean()) ** 2).sum()
        assert resid_share > 0.2  # the planted signal lives within the categories


@pytest.fixture(scope="module")
def subset_target(external, tmp_path_factory):
    """The Coder finance target on 3 categories x 20 prompts (a real model extracts 60 prompts quickly)."""
    summ = json.loads((external / CODER).read_text())["summ_by_q"]
    keep = [q for q in summ if q.rsplit("_", 1)[0] in ("offensive_jokes", "self_harm_and_suicide",
                                                         "fraud_and_illegal_activity") and int(q[-3:]) <= 20]
    path = tmp_path_factory.mktemp("target") / "eval_subset.json"
    path.write_text(json.dumps({"summ_by_q": {q: summ[q] for q in keep}}))
    return path


def test_whole_path_with_a_real_model(external, subset_target, smollm2, tmp_path):
    r = ep.priors(target=f"{subset_target}:harmless", prompts=external / HBP, model=smollm2, layers="-1",
                  n_repeats=2, n_permutations=10, n_random=1, n_power=5, store_out=tmp_path / "acts")
    assert len(r.target) == 60 and len(set(r.categories)) == 3
    assert r.meta["score"] == "harmless" and r.meta["layers"] == [smollm2.n_layers - 1]
    assert r.verdict().verdict in ("supported", "not supported", "inconclusive")
    assert set(r.fold_scores) >= {"activations", "category", "text", "category+activations"}
    out = r.save(tmp_path / "priors")
    assert (out / "plot.png").is_file() and (out / "comparisons.parquet").is_file()
    again = ep.priors(target=subset_target, prompts=external / HBP, features=tmp_path / "acts", n_repeats=2,
                      n_permutations=10, n_random=1, n_power=5)  # the saved store, no model
    assert np.allclose(again.fold_scores["activations"], r.fold_scores["activations"])


def test_bad_inputs_are_one_line(external, subset_target, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}],
                                   "metadata": {"question_id": "other_001"}}) + "\n")
    with pytest.raises(DataError, match="60 of the target's 60 question ids match no prompt"):
        ep.priors(target=subset_target, prompts=prompts, features=tmp_path)
    one = tmp_path / "eval_one.json"
    one.write_text(json.dumps({"summ_by_q": {f"fraud_and_illegal_activity_{i:03d}": {"harmless": float(i)}
                                             for i in range(1, 21)}}))
    with pytest.raises(DataError, match="all fall in one category"):
        ep.priors(target=one, prompts=external / HBP, features=tmp_path)
    bad = tmp_path / "eval_bad.json"
    bad.write_text(json.dumps({"agg": {}}))
    with pytest.raises(DataError, match="no 'summ_by_q'"):
        ep.priors(target=bad, prompts=external / HBP, features=tmp_path)
    with pytest.raises(ConfigError, match="estimator must be one of"):
        ep.priors(target=subset_target, prompts=external / HBP, features=tmp_path, estimator="forest")
    with pytest.raises(ConfigError, match="model= .* or features="):
        ep.priors(target=subset_target, prompts=external / HBP)
