"""Analysis cores on constructed cases with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.track.adapter import adapter_trajectory
from emprobe.analysis.dynamics.correlations import best_alignment_at_loss, loss_alignment_correlations
from emprobe.analysis.dynamics.matched_loss import compare_at_matched_loss
from emprobe.analysis.monitor.compute import drift_auroc, leave_one_run_out
from emprobe.analysis.priors.loqo import (
    loqo_pls, loqo_ridge, loqo_ridge_operator, random_feature_control, single_direction_predictor,
)
from emprobe.analysis.stats import auroc, bootstrap_ci, permutation_pvalue
from emprobe.analysis.stats.subspace import (
    cosine_with_control, overlap, overlap_with_control, pca_basis, random_basis,
)
from emprobe.errors import ConfigError, DataError

D = 256


def test_planted_shift_overlap_is_one_and_random_is_k_over_d():
    rng = np.random.default_rng(10)
    v = rng.standard_normal(D)
    train_deltas = np.outer(rng.uniform(1, 2, 40), v) + 0.01 * rng.standard_normal((40, D))
    eval_deltas = np.outer(rng.uniform(1, 2, 30), v) + 0.01 * rng.standard_normal((30, D))
    u1, u2 = pca_basis(train_deltas, 1, center=False), pca_basis(eval_deltas, 1, center=False)
    res = overlap_with_control(u1, u2, n_random=300)
    assert res["overlap"] > 0.99 and res["z"] > 50
    for k in (1, 4, 8):
        vals = [overlap(random_basis(D, k, rng), random_basis(D, k, rng)) for _ in range(300)]
        assert np.mean(vals) == pytest.approx(k / D, rel=0.15)
    c = cosine_with_control(train_deltas.mean(0), eval_deltas.mean(0))
    assert c["cosine"] > 0.99 and abs(c["random_mean"]) < 0.02


def test_pca_basis_errors():
    with pytest.raises(ConfigError, match="k=5"):
        pca_basis(np.ones((3, 4)), 5)
    with pytest.raises(ConfigError, match="NaN"):
        pca_basis(np.full((3, 4), np.nan), 1)


def test_ridge_operator_matches_refit_and_priors_find_planted_signal():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    n = 36
    # activations with low-dimensional structure: 4 latent factors, one of which drives the target
    z = rng.standard_normal((n, 4))
    x = z @ rng.standard_normal((4, D)) + 0.5 * rng.standard_normal((n, D))
    w = np.linalg.lstsq(x, z[:, 0], rcond=None)[0]
    y = z[:, 0] + 0.2 * rng.standard_normal(n)
    op = loqo_ridge_operator(x, np.arange(n), alpha=0.1)
    tr = np.arange(n) != 5
    mu = x[tr].mean(0)
    lam = 0.1 * np.trace((x[tr] - mu) @ (x[tr] - mu).T) / tr.sum()
    assert (op @ y)[5] == pytest.approx(Ridge(alpha=lam).fit(x[tr], y[tr]).predict(x[5:6])[0], abs=1e-8)

    res = loqo_ridge(x, y, alpha=0.1, n_permutations=1000)
    assert res.rho > 0.5 and res.p_value < 0.01 and res.n_permutations == 1000
    ctrl = random_feature_control(x.shape, y, alpha=0.1, n_seeds=30)
    assert ctrl["random_rho_mean"] < res.rho - 0.4
    shuffled = loqo_ridge(x, rng.permutation(y), alpha=0.1, n_permutations=500)
    assert shuffled.p_value > 0.05
    single = single_direction_predictor(x @ w, y, n_permutations=500)
    assert single["spearman_rho"] > 0.9 and single["p_permutation"] < 0.01
    pls = loqo_pls(x, y, n_components=2, n_permutations=20)
    assert pls.rho > 0.4


def test_priors_group_by_question():
    rng = np.random.default_rng(2)
    q = np.repeat(np.arange(12), 3)  # 12 questions x 3 paraphrases
    x = rng.standard_normal((36, 32))
    op = loqo_ridge_operator(x, q)
    for g in range(12):  # a question's rows never predict each other
        idx = np.flatnonzero(q == g)
        assert np.all(op[np.ix_(idx, idx)] == 0)
    with pytest.raises(ConfigError, match="at least 3 questions"):
        loqo_ridge(x[:6], np.arange(6.0), np.repeat([0, 1], 3))


def _dyn_table() -> pd.DataFrame:
    rows = []
    for run, sched, offset in (("a", "cosine", 0.0), ("b", "cosine", 0.1), ("c", "constant", 0.5)):
        for step, loss in zip((0, 5, 10, 25), (2.0, 1.5, 1.0, 0.5)):
            rows.append({"run": run, "schedule": sched, "step": step, "val_loss": loss,
                         "ood_score": offset - loss})
    return pd.DataFrame(rows)


def test_dynamics_known_answers():
    df = _dyn_table()
    corr = loss_alignment_correlations(df, n_permutations=200)
    within = corr[corr.scope != "all runs"]
    assert np.allclose(within.spearman_rho, -1.0)
    assert np.allclose(within.p_two_sided, 2 / 24, atol=0.03)  # 2 of 4! orders tie |ρ| = 1 (ties count)
    best = best_alignment_at_loss(df, [1.0, 0.4])
    row = best[(best.schedule == "cosine") & (best.loss_level == 1.0)].iloc[0]
    assert row.best_ood_score == pytest.approx(-1.0) and row.run == "a" and row.step == 10
    assert best[(best.loss_level == 0.4)].best_ood_score.isna().all()
    cmp = compare_at_matched_loss(df.assign(data="d", question_id="mean", margin=df.ood_score))
    assert cmp.matched.loss_level.unique() == pytest.approx([0.5, 0.875, 1.25, 1.625])  # lower end + quartiles
    assert cmp.gaps.gap.to_numpy() == pytest.approx([0.45] * 4)  # constant - cosine at every matched loss
    # one value per checkpoint, but two cosine runs: a CI over runs on 1 df (wide), none for a lone run
    assert np.allclose(cmp.gaps.df, 1.0) and (cmp.gaps.better == "").all()
    assert cmp.matched.set_index("schedule").ci_low.loc["constant"].isna().all()
    with pytest.raises(ConfigError, match="lacks columns"):
        loss_alignment_correlations(df.drop(columns="schedule"))


def test_monitor_auroc_and_leave_one_run_out():
    rng = np.random.default_rng(3)
    runs = np.repeat(["r1", "r2", "r3", "r4"], 5)
    labels = np.tile([0, 0, 1, 1, 1], 4).astype(bool)
    drift = labels * 2.0 + 0.3 * rng.standard_normal(20)
    res = drift_auroc(drift, labels, n_permutations=300)
    assert res["auroc"] == pytest.approx(auroc(labels, drift)) and res["auroc"] > 0.95 and res["p_permutation"] < 0.01
    loro = leave_one_run_out(np.c_[drift, rng.standard_normal(20)], labels, runs)
    assert loro["auroc_loro"] > 0.9 and loro["n_runs"] == 4
    assert auroc(np.array([0, 1]), np.array([1.0, 0.0])) == 0.0


def test_hierarchical_bootstrap_covers_with_three_seeds():
    """Two schedules x 3 seeds x 20 questions, run-to-run noise dominating: the t interval on Satterthwaite df
    covers the true gap (0) about 95 % of the time; a question-only interval would cover far less."""
    from emprobe.analysis.stats.hierarchical import hierarchical_bootstrap

    rng = np.random.default_rng(0)
    hits, narrow = 0, 0
    for _ in range(300):
        q = 0.1 * rng.standard_normal(20)  # question effects, shared (paired)
        groups = {g: q + 0.05 * rng.standard_normal((3, 1)) + 0.02 * rng.standard_normal((3, 20)) for g in "ab"}
        hb = hierarchical_bootstrap(groups, n_boot=300, seed=int(rng.integers(1 << 30)))
        c = hb.contrast({"a": 1.0, "b": -1.0})
        e = c.effect()
        hits += e.ci_low <= 0 <= e.ci_high
        narrow += abs(c.estimate) < 1.96 * float(np.std(hb.questions_only[0] - hb.questions_only[1], ddof=1))
        assert 2 <= c.df <= 40 and c.n_runs == 6
    assert 0.91 <= hits / 300 <= 0.99 and narrow / 300 < 0.6


def test_verdict_rule_parts_and_families():
    from emprobe.analysis.stats.verdict import Effect, decide, decide_all, decide_all_equivalent

    wide = decide(Effect(0.1, -0.1, 0.3), 0.2, wide="too few questions (12)")
    assert wide.verdict == "inconclusive" and wide.reason.endswith("too few questions (12)")
    yes, no, maybe = decide(Effect(0.3, 0.1, 0.5), 0.2), decide(Effect(0.0, -0.05, 0.05), 0.2), wide
    assert decide_all({"a": yes, "b": yes}).verdict == "supported"
    assert decide_all({"a": yes, "b": no}).verdict == "not supported" and decide_all({"a": yes, "b": no}).about == "b"
    assert decide_all({"a": yes, "b": maybe}).verdict == "inconclusive"
    assert decide_all({"a": maybe, "b": no}).verdict == "not supported"  # one part shown false refutes the whole

    def cmp(est, se, sesoi=0.1, p=None):
        from scipy import stats

        p = 2 * stats.norm.sf(abs(est) / se) if p is None else p
        return (Effect(est, est - 1.96 * se, est + 1.96 * se), Effect(est, est - 1.645 * se, est + 1.645 * se, 0.9),
                p, sesoi)

    assert decide_all_equivalent({"x": cmp(0.01, 0.02), "y": cmp(-0.02, 0.02)}).verdict == "supported"
    d = decide_all_equivalent({"x": cmp(0.01, 0.02), "y": cmp(0.3, 0.05)})
    assert d.verdict == "not supported" and d.about == "y" and "Holm" in d.reason
    d = decide_all_equivalent({"x": cmp(0.01, 0.02), "y": cmp(0.05, 0.06)})
    assert d.verdict == "inconclusive" and d.about == "y"
    # a difference of the SESOI's size whose p survives alone but not Holm's correction over 20 comparisons
    many = {f"c{i}": cmp(0.0, 0.01) for i in range(19)} | {"big": cmp(0.12, 0.055)}
    assert decide_all_equivalent(many).verdict == "inconclusive"
    assert decide_all_equivalent({}, cannot_test="no EM established").reason == "no EM established"


def test_stats_helpers():
    assert permutation_pvalue(1.0, np.zeros(99)) == pytest.approx(1 / 100)
    lo, hi = bootstrap_ci(np.arange(100.0), n_boot=500)
    assert lo < 49.5 < hi


def _save_adapter(path, b_dir: np.ndarray, scale: float):
    from safetensors.numpy import save_file

    path.mkdir(parents=True)
    a = np.ones((1, 8), np.float32)
    save_file({"base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": a,
               "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": (scale * b_dir)[:, None].astype(np.float32)},
              str(path / "adapter_model.safetensors"))
    return path


def test_adapter_trajectory_detects_rotation(tmp_path):
    rng = np.random.default_rng(4)
    v1, v2 = rng.standard_normal(16), rng.standard_normal(16)
    # B grows along v1 for 3 checkpoints, then the growth turns to v2 (a phase transition at step 3)
    bs = [0 * v1, 1 * v1, 2 * v1, 3 * v1, 3 * v1 + 1 * v2, 3 * v1 + 2 * v2]
    ckpts = [(s, _save_adapter(tmp_path / f"s{s}", b, 1.0)) for s, b in enumerate(bs)]
    df = adapter_trajectory(ckpts)
    mod = df[df.module == "model.layers.0.mlp.down_proj"].set_index("step")
    assert mod.loc[1, "local_cos_B"] == pytest.approx(1.0) and mod.loc[2, "local_cos_B"] == pytest.approx(1.0)
    assert mod.loc[3, "local_cos_B"] < 0.5 and mod.loc[4, "local_cos_B"] == pytest.approx(1.0)
    assert mod.loc[5, "cos_B_to_final"] == pytest.approx(1.0) and mod.loc[0, "norm_B"] == 0.0
    assert set(df.module) == {"model.layers.0.mlp.down_proj", "<all>"}
    with pytest.raises(DataError, match="no adapter_model.safetensors"):
        adapter_trajectory([(0, tmp_path), (1, tmp_path)])
