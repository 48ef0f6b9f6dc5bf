"""`priors` (claim 2) on planted data both ways, the target's reliability, and other people's judged CSVs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.analysis.priors import PriorsResult, load_target, priors
from emprobe.analysis.priors.inputs import feature_stores, model_kind, pair_margins
from emprobe.analysis.stats import partial_spearman, split_half_reliability
from emprobe.errors import DataError
from emprobe.probes import ActivationStore, Direction

D, N_Q = 48, 40


def _store(x: np.ndarray, qids: list[str], name: str) -> ActivationStore:
    records = [{"uid": f"{q}/{i}", "question_id": q, "label": None, "pair": None} for i, q in enumerate(qids)]
    model = {"name": name, "fingerprint": {"architecture": "Toy", "n_layers": x.shape[1], "d_model": D}}
    return ActivationStore({"last_prompt": torch.tensor(x, dtype=torch.float32)}, list(range(x.shape[1])), records,
                           {"model": model})


def _acts(rng, signal: np.ndarray | None, v: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """2 paraphrases per question, 2 layers; layer 1 carries ``3 * signal`` along ``v``."""
    qids = [f"q{i}" for i in range(N_Q) for _ in range(2)]
    x = rng.standard_normal((2 * N_Q, 2, D))
    if signal is not None:
        x[:, 1] += 3 * np.repeat(signal, 2)[:, None] * v
    return x, qids


def _long(qs: list[str], values: np.ndarray, control: np.ndarray) -> pd.DataFrame:
    """Per-(question, pair) rises and control changes: ``values``/``control`` are ``[n_q, n_pairs]``."""
    n_p = values.shape[1]
    return pd.DataFrame({"question_id": np.repeat(qs, n_p), "pair": np.tile(np.arange(n_p), len(qs)),
                         "rise": values.ravel(), "control": control.ravel()})


def test_planted_activation_predictor_beats_headroom(tmp_path):
    rng = np.random.default_rng(0)
    qs = [f"q{i}" for i in range(N_Q)]
    v = rng.standard_normal(D)
    v /= np.linalg.norm(v)
    latent, generic, base = rng.standard_normal((3, N_Q))
    # per pair: rise = EM-specific latent + a generic fine-tuning part + pair noise; the control moves by the
    # generic part only. Per-pair EM-specific noise var = 0.75 + 0.25 -> reliability of the 3-pair mean 0.75.
    rise = (latent + generic + 0.3 * base)[:, None] + np.sqrt(0.75) * rng.standard_normal((N_Q, 3))
    ctrl = generic[:, None] + 0.5 * rng.standard_normal((N_Q, 3))
    pairs = _long(qs, rise, ctrl)
    x, qids = _acts(rng, latent, v)
    noise, _ = _acts(rng, None, v)
    stores = [_store(x, qids, "smollm2-135m-instruct"), _store(noise, qids, "gemma-3-270m")]
    direction = Direction("mean_diff", [0, 1], torch.tensor(np.stack([np.zeros(D) + 1e-3, v])), "last_prompt",
                          {"model": stores[0].model}, best_layer=1)
    control = pairs.groupby("question_id").control.mean()
    cats = {q: f"topic{i % 4}" for i, q in enumerate(qs)}
    res = priors(stores, pairs[["question_id", "pair", "rise"]], control=control, categories=cats,
                 base_margin=pd.DataFrame({"question_id": qs, "base_margin": base}), reliability=pairs, layers="1",
                 direction=direction, n_permutations=500, n_random=20, n_sim=200)
    assert isinstance(res, PriorsResult) and res.primary == "em_specific" and res.decision_features == "combined"
    assert res.controls == ("base margin", "category")
    t = res.table.set_index(["target", "features", "predictor"])
    act = t.loc[("em_specific", "combined", "activations")]
    both = t.loc[("em_specific", "combined", "activations+controls")]
    assert act.spearman_rho > 0.6 and act.p_permutation < 0.01 and both.partial_p < 0.01 and both.partial_rho > 0.5
    assert act.null_rho_mean < 0 and act.random_rho_mean < act.spearman_rho - 0.4  # LOQO bias shown
    assert "p_random" not in res.table.columns  # random features are a description, not a test
    assert t.loc[("em_specific", "category", "category")].spearman_rho < 0.3 and res.meta["n_categories"] == 4
    assert res.effect["ci_low"] > 0.3 and res.effect["estimate"] >= res.effect["ci_low"]
    assert t.loc[("em_specific", "instruct", "activations")].spearman_rho > 0.7
    assert t.loc[("em_specific", "pre-trained", "activations")].p_permutation > 0.01
    assert t.loc[("em_specific", "base margin", "headroom")].spearman_rho < 0.3
    assert t.loc[("raw", "combined", "activations")].spearman_rho < act.spearman_rho  # generic part is noise
    assert t.loc[("em_specific", "direction:mean_diff@L1", "direction")].spearman_rho > 0.7
    rel = res.reliability
    assert rel["reliability"] == pytest.approx(0.75, abs=0.15) and rel["reliability_ci_low"] < rel["reliability"]
    v_ = res.verdict()
    assert v_.verdict == "supported" and "partial ρ | base margin, category" in v_.number and "SESOI ρ 0.3" in v_.number
    f = res.findings()
    assert f[0].startswith("Claim 2 is supported") and f[1].startswith("Leave-one-question-out ridge on 'combined'")
    assert f[2].startswith("Controls on the same folds") and "category only" in f[2]
    assert any("ceiling" in s for s in f) and any("power at the SESOI" in s for s in f)
    out = res.save(tmp_path / "priors")
    s = json.loads((out / "summary.json").read_text())
    assert s["verdict"]["verdict"] == "supported" and s["n_questions"] == N_Q and s["rho_instruct"] > 0.7
    assert (out / "plot.png").stat().st_size > 1000 and (out / "predictions.parquet").is_file()
    assert len(pd.read_parquet(out / "calibration.parquet")) >= 20


def test_per_pair_target_and_control_give_the_em_specific_reliability():
    rng = np.random.default_rng(7)
    qs = [f"q{i}" for i in range(N_Q)]
    true, generic = rng.standard_normal((2, N_Q))
    rise = (true + generic)[:, None] + rng.standard_normal((N_Q, 3))
    ctrl = generic[:, None] + 0.01 * rng.standard_normal((N_Q, 3))
    pairs = _long(qs, rise, ctrl)
    x, qids = _acts(rng, None, np.ones(D) / np.sqrt(D))
    keys = pairs[["question_id", "pair"]]
    res = priors({"m": _store(x, qids, "m")}, keys.assign(target=pairs.rise), control=keys.assign(target=pairs.control),
                 layers="1", n_permutations=50, n_random=0, n_sim=100)
    assert res.primary == "em_specific" and res.reliability["of"].startswith("EM-specific")
    assert res.reliability["reliability"] == pytest.approx(0.75, abs=0.15)  # the generic part cancels
    # random activations on 40 questions: isotropic features cannot carry a learnable signal, so the estimator has
    # no power here and a null says nothing (the old Fisher-z gate called this "not supported")
    v = res.verdict()
    assert v.verdict == "inconclusive" and "too few questions (40)" in v.reason and res.effect["power"] < 0.5


@pytest.mark.parametrize("encode_base", [False, True])
def test_headroom_only_target_does_not_credit_activations(encode_base):
    rng = np.random.default_rng(1)
    qs = [f"q{i}" for i in range(N_Q)]
    v = rng.standard_normal(D)
    v /= np.linalg.norm(v)
    base = rng.standard_normal(N_Q)
    target = pd.DataFrame({"question_id": qs, "target": 2 * base + 0.5 * rng.standard_normal(N_Q),
                           "target_kind": "margin_rise"})
    # activations random, or (harder) carrying the base margin itself: either way they add nothing beyond it
    x, qids = _acts(rng, base if encode_base else None, v)
    res = priors({"instruct": _store(x, qids, "m")}, target, base_margin=pd.Series(base, index=qs), layers="1",
                 n_permutations=500, n_random=10, n_sim=100)
    both = res.row("activations+controls")
    assert both.partial_rho < 0.3 and both.partial_p > 0.05  # LOQO shrinkage may push it below 0
    assert res.verdict().verdict != "supported" and res.effect["ci_low"] == 0.0
    assert res.findings()[0].startswith("Headroom alone")
    if encode_base:  # the activations do predict the target, only through the headroom
        assert res.act.p_permutation < 0.01


@pytest.mark.parametrize("n_p", [3, 4])
def test_split_half_reliability_matches_theory(n_p):
    rng = np.random.default_rng(2)
    n_q = 400
    true = rng.standard_normal(n_q)  # var 1; pair noise var 1 -> the mean of n_p pairs has reliability n_p/(n_p+1)
    vals = true[:, None] + rng.standard_normal((n_q, n_p))
    df = pd.DataFrame({"question_id": np.repeat(np.arange(n_q), n_p), "pair": np.tile(np.arange(n_p), n_q),
                       "rise": vals.ravel()})
    rel = split_half_reliability(df, n_splits=100)
    want = n_p / (n_p + 1)  # 0.75 (halves of 1 and 2 pairs) / 0.8 (Spearman–Brown proper)
    assert rel["reliability"] == pytest.approx(want, abs=0.04)
    assert rel["ceiling_rho"] == pytest.approx(np.sqrt(want), abs=0.03)
    assert rel["reliability_ci_low"] < want < rel["reliability_ci_high"] and rel["reliability_ci_high"] - \
        rel["reliability_ci_low"] < 0.12  # 400 questions: a narrow CI; the gates use its lower end
    assert rel["ceiling_rho_low"] == pytest.approx(np.sqrt(rel["reliability_ci_low"]))
    one = split_half_reliability(df[df.pair == 0], n_splits=10)  # one pair per question: nothing to split
    assert np.isnan(one["reliability"]) and one["n_questions"] == 0


def test_reliability_of_pure_noise_is_never_negative():
    """Spearman–Brown on a negative split-half r would print impossible reliabilities (2r/(1+r) < 0, down to −∞);
    a reliability is a share of variance, so r ≤ 0 gives 0 and the CI stays inside [0, 1]."""
    from emprobe.analysis.stats import spearman_brown

    assert spearman_brown(-0.6, 1, 1) == 0.0 and spearman_brown(-0.2, 1, 2) == 0.0
    assert spearman_brown(0.5, 2, 2) == pytest.approx(2 / 3)
    rng = np.random.default_rng(5)
    qs = [f"q{i}" for i in range(8)]
    noise = pd.DataFrame({"question_id": np.repeat(qs, 2), "pair": np.tile([0, 1], 8), "v": rng.standard_normal(16)})
    rel = split_half_reliability(noise, value="v")
    assert 0.0 <= rel["reliability_ci_low"] <= rel["reliability"] <= rel["reliability_ci_high"] <= 1.0
    assert rel["reliability_ci_low"] == 0.0 and rel["ceiling_rho_low"] == 0.0


def test_partial_correlation_given_several_controls():
    rng = np.random.default_rng(3)
    z = rng.standard_normal(500)
    x, y = z + 0.3 * rng.standard_normal(500), z + 0.3 * rng.standard_normal(500)
    assert partial_spearman(x, y, z) == pytest.approx(0.0, abs=0.12)
    w = rng.standard_normal(500)  # a shared part beyond z
    assert partial_spearman(x + w, y + w, z) > 0.5
    cat = rng.integers(0, 4, 500)  # a topic shared by two independent series: gone given the category indicators
    a, b = rng.standard_normal((2, 500)) + 3 * cat
    assert partial_spearman(a, b, z) > 0.5 and partial_spearman(a, b, np.c_[z, np.eye(4)[cat]]) == \
        pytest.approx(0, abs=0.1)


def test_feature_names_come_from_the_model(tmp_path):
    assert model_kind({"name": "gemma-3-270m"}) == "pre-trained"
    assert model_kind({"name": "smollm2-135m-instruct"}) == "instruct"
    d = tmp_path / "some-model"
    d.mkdir()
    (d / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8}))
    assert model_kind({"name": str(d)}) == "pre-trained"
    (d / "tokenizer_config.json").write_text(json.dumps({"chat_template": "{{x}}"}))
    assert model_kind({"name": str(d)}) == "instruct"
    x, qids = _acts(np.random.default_rng(4), None, np.ones(D))
    names = feature_stores([_store(x, qids, "gemma-3-270m"), _store(x, qids, "smollm2-135m-instruct")])
    assert list(names) == ["pre-trained", "instruct"]
    two = feature_stores([_store(x, qids, "a-instruct"), _store(x, qids, "b-instruct")])
    assert list(two) == ["instruct (a-instruct)", "instruct (b-instruct)"]


def test_pair_margins_from_a_score_table():
    from emprobe.evaluation.tables import ScoreTable

    rows = [{"question_id": q, "kind": k, "reference_index": r, "paraphrase_index": p,
             "logprob_mean": (1.0 if k == "misaligned" else 0.0) + r + 0.1 * p}
            for q in ("a", "b") for k in ("aligned", "misaligned") for r in range(3) for p in range(2)]
    table = ScoreTable(pd.DataFrame(rows), pd.DataFrame({"question_id": ["a", "b"]}), {"metric": "margin"})
    pm = pair_margins(table)
    assert len(pm) == 6 and np.allclose(pm.value, 1.0) and set(pm.pair) == {0, 1, 2}
    assert np.allclose(pair_margins(table, baseline=table).value, 0.0)


def test_target_from_other_peoples_judged_csv(external):
    csv = external / "clarifying_EM" / "responses" / "responses_Qwen2.5-14B-Instruct-bad_medical_advice.csv"
    df = load_target(csv)
    assert df.target_kind.iloc[0] == "em_rate" and df.question_id.nunique() == len(df) >= 20
    raw = pd.read_csv(csv)
    q = df.set_index("question_id").target
    one = raw[raw.question_id == q.index[0]]
    scored = one.dropna(subset=["aligned", "coherent"])
    assert q.iloc[0] == pytest.approx(((scored.aligned < 30) & (scored.coherent > 50)).mean())
    base = external / "clarifying_EM" / "responses" / "responses_Qwen2.5-14B-Instruct_base.csv"
    rise = load_target(csv, baseline=base)
    assert rise.target_kind.iloc[0] == "em_rate_rise" and len(rise) == len(df)


def test_target_errors(tmp_path):
    with pytest.raises(DataError, match="no such score table"):
        load_target(tmp_path / "nothing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("question_id,answer\nq,a\n")
    with pytest.raises(DataError, match="lacks columns"):
        load_target(bad)
    x, qids = _acts(np.random.default_rng(5), None, np.ones(D))
    few = pd.DataFrame({"question_id": ["q0", "q1", "q2"], "target": [0.1, 0.2, 0.3]})
    with pytest.raises(DataError, match="need >= 5"):
        priors({"m": _store(x, qids, "m")}, few, layers="1")


def test_ridge_with_unpenalised_covariate_matches_a_refit():
    from sklearn.linear_model import LinearRegression, Ridge

    from emprobe.analysis.priors.loqo import loqo_ridge_operator

    rng = np.random.default_rng(6)
    n = 24
    x, c, y = rng.standard_normal((n, 40)), rng.standard_normal(n), rng.standard_normal(n)
    tr = np.arange(n) != 3
    z = np.c_[np.ones(tr.sum()), c[tr]]
    resid = np.eye(tr.sum()) - z @ np.linalg.pinv(z)
    lam = 0.5 * np.trace(resid @ x[tr] @ x[tr].T @ resid) / tr.sum()
    xc = np.c_[x, 1e4 * c]  # a huge scale makes the covariate's penalty vanish
    want = Ridge(alpha=lam).fit(xc[tr], y[tr]).predict(xc[3:4])[0]
    assert (loqo_ridge_operator(x, np.arange(n), 0.5, covariates=c) @ y)[3] == pytest.approx(want, abs=1e-6)
    ols = LinearRegression().fit(c[tr, None], y[tr]).predict(c[3:4, None])[0]
    assert (loqo_ridge_operator(None, np.arange(n), covariates=c) @ y)[3] == pytest.approx(ols, abs=1e-10)
