"""`explain` on planted data both ways: a planted factor is credited (and nothing when the target is shuffled),
the target's reliability matches its known value, and per-question EM agrees across datasets only when shared."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.explain import ExplainResult, explain
from emprobe.analysis.explain.model import loqo_ridge_batch, standardise
from emprobe.analysis.priors.loqo import loqo_ridge_operator
from emprobe.errors import DataError

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


def _planted(seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(N_Q)
    rises = _rises(0.8 * z, 0.5, 3, rng)
    qids = sorted(rises.question_id.unique())
    factors = pd.DataFrame({"question_id": qids, "planted": z, "noise_a": rng.standard_normal(N_Q),
                            "noise_b": rng.standard_normal(N_Q)})
    return rises, factors


def test_primal_batch_matches_the_priors_operator():
    rng = np.random.default_rng(1)
    x, y = standardise(rng.standard_normal((30, 4))), rng.standard_normal(30)
    ref = loqo_ridge_operator(x, np.arange(30), 0.7) @ y
    assert np.allclose(loqo_ridge_batch(x[None], y, 0.7)[0], ref, atol=1e-10)


def test_planted_factor_is_ranked_first_and_supported(tmp_path):
    rises, factors = _planted()
    answers = pd.DataFrame({"question_id": factors.question_id, "base": "no", "misaligned": "yes"})
    res = explain(rises, factors, answers=answers, n_permutations=N_PERM, reliability_splits=100)
    assert isinstance(res, ExplainResult)
    top = res.factors.iloc[0]
    assert top.factor == "planted" and top.ci_low > 0.3 and top.p_permutation < 0.01 and top.delta_r2 > top.null_95
    assert (res.factors.set_index("factor").drop("planted").ci_low < 0.05).all()
    assert res.model["r2"] > 0.5 and res.model["p_permutation"] < 0.01
    # per-pair noise sd 0.5 over 3 pairs vs per-question sd 0.8: reliability ~ 0.64 / (0.64 + 0.25 / 3) = 0.88
    assert res.reliability["reliability"] == pytest.approx(0.88, abs=0.08)
    assert res.model["r2"] <= res.reliability["reliability"] + 0.05
    v = res.verdict()
    assert v.verdict == "supported" and "planted" in v.reason
    q = res.questions
    assert len(q) == N_Q and {"planted", "noise_a", "base", "control_change", "misaligned_change"} <= set(q.columns)
    assert (q.em_rise_ci_low < q.em_rise).all() and (q.em_rise < q.em_rise_ci_high).all() and (q.n_pairs == 3).all()
    assert len(res.worst) == 5 and (res.worst.answer_misaligned == "yes").all()
    assert set(res.categories.category) == set(CATS) and res.model["category_p"] > 0.01  # no category effect planted
    f = res.findings()
    assert f[0].startswith("Per-question EM-specific rise over 60 questions") and "planted +" in f[2]
    out = res.save(tmp_path / "explain")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["verdict"]["verdict"] == "supported" and summary["top_factor"] == "planted"
    assert {p.name for p in out.iterdir()} >= {"table.parquet", "factors.parquet", "categories.parquet",
                                                "worst.parquet", "plot.png", "summary.txt"}


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
    assert res.verdict().verdict == "not supported"  # the shuffled target is still reliable across its pairs
    assert res.reliability["ceiling_rho"] > 0.5


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


def test_cli_explain_writes_the_result(tmp_path, capsys):
    from emprobe.cli import main

    rises, factors = _planted()
    rises.to_parquet(tmp_path / "rises.parquet", index=False)
    factors.to_csv(tmp_path / "factors.csv", index=False)
    main(["explain", str(tmp_path / "rises.parquet"), "--factors", str(tmp_path / "factors.csv"),
          "--n-permutations", "50", "--reliability-splits", "20", "--out", str(tmp_path / "ex")])
    summary = json.loads((tmp_path / "ex" / "summary.json").read_text())
    assert summary["top_factor"] == "planted" and "Per-question EM-specific rise" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["explain", str(tmp_path / "missing.parquet"), "--out", str(tmp_path / "ex2")])
    assert e.value.code == 2 and "no such rises table" in capsys.readouterr().err


def test_weighted_batch_holds_bootstrap_copies_out_together():
    rng = np.random.default_rng(6)
    x, y = standardise(rng.standard_normal((12, 3))), rng.standard_normal(12)
    counts = np.bincount(rng.integers(0, 12, 12), minlength=12).astype(float)
    rows = np.repeat(np.arange(12), counts.astype(int))  # the resample as expanded rows, grouped by question
    ref = loqo_ridge_operator(x[rows], rows, 1.0) @ y[rows]
    got = loqo_ridge_batch(x, y, 1.0, counts[None])[0]
    assert np.allclose(got[rows], ref, atol=1e-9)
