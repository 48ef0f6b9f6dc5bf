"""`explain` on planted data: the nested estimator against brute force (no held-out target reaches its own training
rows), a planted factor (and planted prior features) credited, the three verdicts (effect → supported, none at a
large n → not supported, weak → inconclusive), a null with a stacked prior factor whose permutation p is uniform,
the reliability at its known value, and per-question EM agreeing across datasets only when shared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.explain import ExplainResult, explain
from emprobe.analysis.explain.model import FactorModel, model_fit
from emprobe.analysis.explain.nested import fold_designs, nested_predict, prior_column, prior_operators
from emprobe.errors import ConfigError, DataError

N_Q, N_PERM = 60, 200
CATS = ["wishes", "power", "health", "money"]


def _rises(per_q: np.ndarray, pair_sd: float, n_pairs: int, rng, qids=None, dataset=None) -> pd.DataFrame:
    """Long rises: per pair em_rise = per_q + noise; the misaligned run also moves by a generic part (the control's)."""
    n = len(per_q)
    qids = qids or [f"q{i:03d}" for i in range(n)]
    em = per_q[:, None] + pair_sd * rng.standard_normal((n, n_pairs))
    generic = 0.3 * rng.standard_normal((n, 1)) + 0.1 * rng.standard_normal((n, n_pairs))
    df = pd.DataFrame({"question_id": np.repeat(qids, n_pairs), "pair": np.tile(np.arange(n_pairs), n),
                       "base": np.repeat(rng.standard_normal(n), n_pairs), "misaligned_change": (em + generic).ravel(),
                       "control_change": generic.ravel(), "em_rise": em.ravel(),
                       "category": np.repeat([CATS[i % 4] for i in range(n)], n_pairs)})
    return df.assign(dataset=dataset) if dataset is not None else df


def _planted(seed: int = 0, n: int = N_Q, strength: float = 0.8):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    rises = _rises(strength * z, 0.5, 3, rng)
    qids = sorted(rises.question_id.unique())
    factors = pd.DataFrame({"question_id": qids, "planted": z, "noise_a": rng.standard_normal(n),
                            "noise_b": rng.standard_normal(n)})
    return rises, factors


def _ridge(xt, yt, lam):
    mu, ym = xt.mean(0), yt.mean()
    beta = np.linalg.solve((xt - mu).T @ (xt - mu) + lam * np.eye(xt.shape[1]), (xt - mu).T @ (yt - ym))
    return lambda x: ym + (x - mu) @ beta


# ---- the nested estimator ----------------------------------------------------------------------------
def test_prior_operators_are_exact_nested_fits():
    rng = np.random.default_rng(0)
    n = 10
    x, y = rng.standard_normal((n, 6)), rng.standard_normal(n)
    ops = prior_operators(x @ x.T, 1.0)
    for i in range(n):
        train = [t for t in range(n) if t != i]
        xc = x[train] - x[train].mean(0)
        lam = np.trace(xc @ xc.T) / (n - 1)  # the fold's penalty, held fixed inside it
        col = ops[i] @ y
        assert (ops[i][:, i] == 0).all()  # the held-out target never enters its own fold
        assert col[i] == pytest.approx(_ridge(x[train], y[train], lam)(x[i]), abs=1e-9)
        for j in train:  # each training row: its leave-one-out prediction within the fold
            inner = [t for t in train if t != j]
            assert col[j] == pytest.approx(_ridge(x[inner], y[inner], lam)(x[j]), abs=1e-9)


def test_nested_predict_standardises_inside_each_fold():
    rng = np.random.default_rng(1)
    n = 12
    f, xp, y = rng.standard_normal((n, 3)) * [1, 5, 20], rng.standard_normal((n, 4)), rng.standard_normal(n)
    ops = prior_operators(xp @ xp.T)
    pred = nested_predict(fold_designs(f, 1, prior_column(ops, y[None])), y[None], 1.0)[0]
    for i in range(n):
        train = [t for t in range(n) if t != i]
        d = np.c_[f, ops[i] @ y]
        z = (d - d[train].mean(0)) / d[train].std(0)  # training rows' mean and sd only
        assert pred[i] == pytest.approx(_ridge(z[train], y[train], 4.0)(z[i]), abs=1e-9)


def test_no_held_out_target_reaches_its_own_prediction():
    rng = np.random.default_rng(2)
    n = 15
    xp = rng.standard_normal((n, 30))
    fm = FactorModel(rng.standard_normal((n, 2)), ("a", "b"), xp @ xp.T)
    y = rng.standard_normal(n)
    pred = fm.predict(y)[0]
    for i in (0, 7, 14):
        moved = y.copy()
        moved[i] += 100.0
        assert fm.predict(moved)[0][i] == pytest.approx(pred[i], abs=1e-8)


def test_null_with_a_stacked_prior_factor_has_a_uniform_permutation_p():
    """The issue's leak: a prior prediction stacked from the real target gave p < 0.05 in 19 % of pure-noise
    runs. Nested, the model's permutation p is uniform: ≤ 7 % below 0.05 over 150 simulated nulls."""
    rng = np.random.default_rng(20260601)
    n, sims = 24, 150
    ps = []
    for s in range(sims):
        xp = rng.standard_normal((n, 40))
        fm = FactorModel(rng.standard_normal((n, 3)), ("base", "a", "b"), xp @ xp.T)
        ps.append(model_fit(fm, rng.standard_normal(n), n_permutations=99, n_boot=0, seed=s)["p_permutation"])
    ps = np.array(ps)
    assert (ps < 0.05).mean() <= 0.07
    assert 0.35 < np.median(ps) < 0.65 and (ps < 0.5).mean() == pytest.approx(0.5, abs=0.12)


# ---- verdicts on planted data ---------------------------------------------------------------------------
def test_planted_factor_is_ranked_first_and_supported(tmp_path):
    rises, factors = _planted()
    answers = pd.DataFrame({"question_id": factors.question_id, "base": "no", "misaligned": "yes"})
    res = explain(rises, factors, answers=answers, n_permutations=N_PERM, reliability_splits=100)
    assert isinstance(res, ExplainResult)
    top = res.factors.iloc[0]
    assert top.factor == "planted" and top.ci_low > 0.3 and top.p_holm < 0.02 and top.delta_r2 > top.null_95
    assert (res.factors.p_holm >= res.factors.p_permutation).all()
    assert (res.factors.set_index("factor").drop("planted").ci_low < 0.05).all()
    assert res.model["r2"] > 0.5 and res.model["r2_ci_low"] > 0.3 and res.model["p_permutation"] < 0.01
    # per-pair noise sd 0.5 over 3 pairs vs per-question sd 0.8: reliability ~ 0.64 / (0.64 + 0.25 / 3) = 0.88
    assert res.reliability["reliability"] == pytest.approx(0.88, abs=0.08)
    v = res.verdict()
    assert v.verdict == "supported" and "planted" in v.reason
    q = res.questions
    assert len(q) == N_Q and {"planted", "noise_a", "base", "control_change", "misaligned_change"} <= set(q.columns)
    assert (q.em_rise_ci_low < q.em_rise).all() and (q.em_rise < q.em_rise_ci_high).all() and (q.n_pairs == 3).all()
    assert len(res.worst) == 5 and (res.worst.answer_misaligned == "yes").all()
    assert set(res.categories.category) == set(CATS) and res.model["category_p"] > 0.01  # no category effect planted
    assert abs(res.factors.set_index("factor").rho_control["planted"]) < 0.35  # the control's change: generic only
    f = res.findings()
    assert f[0].startswith("Per-question EM-specific rise over 60 questions") and "planted +" in f[2]
    out = res.save(tmp_path / "explain")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["verdict"] == "supported" and summary["top_factor"] == "planted"
    assert {p.name for p in out.iterdir()} >= {"table.parquet", "factors.parquet", "categories.parquet",
                                                "worst.parquet", "plot.png", "summary.txt"}


def test_planted_prior_features_are_credited_through_the_nested_fit():
    rises, factors = _planted(3)
    rng = np.random.default_rng(3)
    prior = pd.DataFrame(rng.standard_normal((N_Q, 40)), index=factors.question_id)
    prior[0] += 3 * factors.planted.to_numpy()  # the signal sits in the prior features only
    res = explain(rises, factors[["question_id", "noise_a"]], prior_features=prior, n_permutations=100,
                  reliability_splits=50)
    top = res.factors.iloc[0]
    assert top.factor == "prior_prediction" and top.ci_low > 0 and top.p_holm < 0.05
    assert res.verdict().verdict == "supported" and "prior_prediction" in res.meta["factors"]
    assert "prior_prediction" in res.questions.columns


def test_no_effect_at_a_large_n_is_not_supported():
    rng = np.random.default_rng(5)
    n = 200
    rises = _rises(rng.standard_normal(n), 0.5, 3, rng)  # reliable per-question EM, unrelated to the factors
    factors = pd.DataFrame({"question_id": sorted(rises.question_id.unique()), "a": rng.standard_normal(n),
                            "b": rng.standard_normal(n)})
    res = explain(rises, factors, n_permutations=100, reliability_splits=20)
    n_ = res.numbers()  # raw LOQO R² is biased below 0; above its shuffled-target mean the CI straddles 0
    assert n_["r2_above_null_ci_low"] < 0 < n_["r2_above_null_ci_high"] < 0.10 and res.credited().empty
    assert res.verdict().verdict == "not supported" and "below the SESOI" in res.verdict().reason


def test_weak_effect_is_inconclusive():
    rng = np.random.default_rng(4)
    z = rng.standard_normal(40)  # a reliable per-question EM (reliability ~0.98), the factor explains ~8 % of it
    rises = _rises(0.3 * z + rng.standard_normal(40), 0.3, 3, rng)
    res = explain(rises, pd.DataFrame({"question_id": sorted(rises.question_id.unique()), "planted": z}),
                  n_permutations=N_PERM, reliability_splits=50)
    n_ = res.numbers()
    assert n_["reliability"] > 0.9 and n_["r2_above_null_ci_low"] < 0 < 0.10 < n_["r2_above_null_ci_high"]
    v = res.verdict()
    assert v.verdict == "inconclusive" and "includes both 0 and the SESOI" in v.reason


def test_shuffled_target_credits_nothing():
    rises, factors = _planted()
    rng = np.random.default_rng(5)
    qids = np.array(sorted(rises.question_id.unique()))
    rises = rises.assign(question_id=rises.question_id.map(dict(zip(qids, rng.permutation(qids)))))
    res = explain(rises, factors, n_permutations=N_PERM, reliability_splits=100)
    planted = res.factors.set_index("factor").loc["planted"]
    # a useless factor costs out-of-sample R² (ΔR² slightly below 0): nothing is credited
    assert planted.ci_low <= 0 and planted.delta_r2 < 0.02 and planted.p_permutation > 0.05
    assert res.credited().empty and res.model["p_permutation"] > 0.05
    assert res.verdict().verdict != "supported"


def test_noisy_target_is_inconclusive_and_said_first():
    rng = np.random.default_rng(2)
    rises = _rises(0.05 * rng.standard_normal(N_Q), 1.0, 3, rng)
    res = explain(rises, n_permutations=N_PERM, reliability_splits=100)
    assert res.verdict().verdict == "inconclusive"
    assert res.findings()[0].startswith("The per-question rise is mostly noise: reliability")
    one = explain(rises[rises.pair == 0], n_permutations=20, reliability_splits=10)  # no reliability with one pair
    assert one.verdict().verdict == "inconclusive" and "unknown" in one.findings()[0]
    assert one.questions.em_rise_ci_low.isna().all()


def test_reliability_matches_its_theoretical_value():
    # per-question sd 1, per-pair noise sd 1, 4 pairs: reliability of the 4-pair mean = 1 / (1 + 1/4) = 0.8
    rng = np.random.default_rng(3)
    rises = _rises(rng.standard_normal(200), 1.0, 4, rng)
    res = explain(rises, n_permutations=20, reliability_splits=200)
    assert res.reliability["reliability"] == pytest.approx(0.8, abs=0.05)  # sampling sd ~0.025 at 200 questions
    assert res.reliability["ceiling_rho"] == pytest.approx(np.sqrt(0.8), abs=0.03)


def test_consistency_across_datasets_both_ways():
    rng = np.random.default_rng(4)
    shared = rng.standard_normal(N_Q)
    both = pd.concat([_rises(shared + 0.5 * rng.standard_normal(N_Q), 0.5, 3, rng, dataset=d) for d in ("a", "b")])
    res = explain(both, n_permutations=N_PERM, reliability_splits=50)
    c = res.consistency.set_index("target")
    assert c.loc["em_specific"].rho > 0.5 and c.loc["em_specific"].ci_low > 0 and c.loc["raw"].rho > 0.4
    assert list(res.datasets.dataset) == ["a", "b"] and res.datasets.reliability.gt(0.5).all()
    assert any("Across datasets a vs b" in s for s in res.findings())
    indep = pd.concat([_rises(rng.standard_normal(N_Q), 0.5, 3, rng, dataset=d) for d in ("a", "b")])
    c2 = explain(indep, n_permutations=N_PERM, reliability_splits=50).consistency.set_index("target")
    assert c2.loc["em_specific"].ci_low < 0 < c2.loc["em_specific"].ci_high


def test_bad_inputs_are_one_line_errors():
    rises, factors = _planted()
    with pytest.raises(DataError, match="lacks column"):
        explain(rises.drop(columns="em_rise"))
    with pytest.raises(DataError, match="factor 'planted' is missing for 1 question"):
        explain(rises, factors.iloc[1:], n_permutations=10)
    with pytest.raises(ConfigError, match="prior_features"):  # a stacked prediction from outside leaks the target
        explain(rises, factors.assign(prior_prediction=factors.planted), n_permutations=10)
    with pytest.raises(ConfigError, match="sesoi"):
        explain(rises, factors, sesoi=0.0)


def test_cli_explain_writes_the_result(tmp_path, capsys):
    from emprobe.cli import main

    rises, factors = _planted()
    rises.to_parquet(tmp_path / "rises.parquet", index=False)
    factors.to_csv(tmp_path / "factors.csv", index=False)
    prior = pd.DataFrame(np.random.default_rng(0).standard_normal((N_Q, 5)), columns=list("abcde"))
    prior.insert(0, "question_id", factors.question_id)
    prior.to_parquet(tmp_path / "prior.parquet", index=False)
    main(["explain", str(tmp_path / "rises.parquet"), "--factors", str(tmp_path / "factors.csv"),
          "--prior-features", str(tmp_path / "prior.parquet"), "--sesoi", "0.05",
          "--n-permutations", "50", "--reliability-splits", "20", "--out", str(tmp_path / "ex")])
    summary = json.loads((tmp_path / "ex" / "summary.json").read_text())
    assert summary["top_factor"] == "planted" and "Per-question EM-specific rise" in capsys.readouterr().out
    assert summary["sesoi"] == 0.05 and "p_holm_prior_prediction" in summary
    with pytest.raises(SystemExit) as e:
        main(["explain", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "ex2")])
    assert e.value.code == 2 and "RISES" in (err := capsys.readouterr().err) and "no such table file" in err
