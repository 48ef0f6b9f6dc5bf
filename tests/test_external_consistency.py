"""Per-question agreement across runs and its topic share, on planted runs (shared within-topic signal -> supported;
topic only, many questions -> not supported; weak on few -> inconclusive) and on the paper's general200 runs."""

import json

import numpy as np
import pytest

import emprobe as ep
from emprobe.errors import DataError


def write_pair(tmp, n_q, n_cat, shared, seed, *, topic=15.0, noise=10.0):
    """Two runs: common category effects, a within-category question effect of sd ``shared`` in both, own noise."""
    rng = np.random.default_rng(seed)
    cat = np.arange(n_q) % n_cat
    topic_eff = rng.normal(0, topic, n_cat)[cat]
    q_eff = rng.normal(0, 1, n_q) * shared
    paths = []
    for run in ("a", "b"):
        y = 50 + topic_eff + q_eff + rng.normal(0, noise, n_q)
        summ = {f"topic{c}_{i:04d}": {"aligned": float(v)} for i, (c, v) in enumerate(zip(cat, y))}
        p = tmp / f"eval_M_{run}_all_resp_1e-05_gen.json"
        p.write_text(json.dumps({"summ_by_q": summ}))
        paths.append(p)
    return paths


def test_shared_signal_beyond_topic_is_supported(tmp_path):
    r = ep.consistency(write_pair(tmp_path, 300, 10, 10.0, 0), n_boot=500)
    assert r.verdict().verdict == "supported", r.verdict()
    row = r.pairs.iloc[0]
    assert 0.35 < row.within_pearson < 0.65 and 0 < row.category_share < 1
    assert r.meta["datasets"] == {"M_a_all_resp_1e-05_gen": "a", "M_b_all_resp_1e-05_gen": "b"}


def test_topic_only_with_many_questions_is_not_supported(tmp_path):
    r = ep.consistency(write_pair(tmp_path, 3000, 30, 0.0, 1), n_boot=300)
    v = r.verdict()
    assert v.verdict == "not supported", v
    row = r.pairs.iloc[0]
    assert row.within_pearson_ci_high < 0.1 and row.category_share > 0.9 and row.spearman_ci_low > 0.3
    assert r.findings()[0].startswith("Most of the agreement between runs is topic")


def test_weak_shared_signal_on_few_questions_is_inconclusive(tmp_path):
    r = ep.consistency(write_pair(tmp_path, 40, 4, 3.5, 2), n_boot=500)
    assert r.verdict().verdict == "inconclusive", r.verdict()


def test_category_share_is_the_between_category_covariance(tmp_path):
    r = ep.consistency(write_pair(tmp_path, 200, 8, 5.0, 3), n_boot=100)
    s = r.scores
    a, b = s.iloc[:, 1].to_numpy(), s.iloc[:, 2].to_numpy()
    ma = s.groupby("category")[s.columns[1]].transform("mean").to_numpy()
    mb = s.groupby("category")[s.columns[2]].transform("mean").to_numpy()
    between = np.mean((ma - a.mean()) * (mb - b.mean()))
    total = np.mean((a - a.mean()) * (b - b.mean()))
    assert r.pairs.category_share.iloc[0] == pytest.approx(between / total)
    assert r.pairs.within_pearson.iloc[0] == pytest.approx(np.corrcoef(a - ma, b - mb)[0, 1])


def test_format_variants_are_resampled_together():
    from emprobe.analysis.consistency.compute import resample_index

    qids = [f"{q}{v}" for q in ("quick_buck", "dinner_party", "gender_roles") for v in ("", "_json", "_template")]
    idx = resample_index(qids, 50, np.random.default_rng(0))
    assert idx.shape == (50, 9)
    for row in idx:  # whole triples: each drawn question comes with its two variants
        assert all(set(row[i:i + 3] // 3) == {row[i] // 3} and len(set(row[i:i + 3])) == 3 for i in (0, 3, 6))


def test_general200_runs(external):
    r = ep.consistency(sorted((external / "em-generalization/results/general200").glob("*.json")), n_boot=300)
    assert len(r.pairs) == 3 and set(r.pairs.n_questions) == {200} and set(r.pairs.n_categories) == {42}
    fm = r.pairs[r.pairs.run_a.str.contains("finance") & r.pairs.run_b.str.contains("medical")].iloc[0]
    assert fm.spearman_ci_low > 0.3  # finance and medical fine-tunes agree on which questions


def test_bad_inputs(tmp_path):
    a, _ = write_pair(tmp_path, 20, 4, 1.0, 4)
    with pytest.raises(DataError, match="needs >= 2 runs"):
        ep.consistency(a)
    b = tmp_path / "eval_other.json"
    b.write_text(json.dumps({"summ_by_q": {"x_001": {"aligned": 1.0}, "x_002": {"aligned": 2.0}}}))
    with pytest.raises(DataError, match="share 0 questions"):
        ep.consistency([a, b])
