"""Claim 1 on external runs: constructed em-generalization-style runs both ways (a schedule better aligned at
matched loss -> not supported; schedules on one loss-score curve -> supported; a weak gap on few noisy questions
-> inconclusive), run-to-run noise from replicate seeds, and the 35 schedule runs of the paper."""

import json

import numpy as np
import pytest

import emprobe as ep
from emprobe.analysis.dynamics.external import external_dynamics
from emprobe.errors import ConfigError, DataError

LRS = (1e-5, 3e-5, 5e-5, 7e-5)


def write_runs(out, shifts, *, n_q=40, noise=2.0, seeds=(0,), run_sd=0.0, rng_seed=0):
    """One eval_*.json per (schedule, lr, seed): eval loss falls with lr (schedules' ranges overlap), the mean
    aligned score follows one curve of the loss plus the schedule's shift, with per-question effects and noise."""
    rng = np.random.default_rng(rng_seed)
    seqs = rng.normal(1.40, 0.30, 300)  # one held-out set, shared by every run
    q_eff = rng.normal(0, 10, n_q)
    entries = []
    for k, (sched, shift) in enumerate(shifts.items()):
        for j, lr in enumerate(LRS):
            for seed in seeds:
                loss = 1.40 - 0.025 * j + 0.004 * k
                run_eff = rng.normal(0, run_sd) if run_sd else 0.0
                mean = 40 + 400 * (loss - 1.30) + shift + run_eff
                aligned = np.clip(mean + q_eff + rng.normal(0, noise, n_q), 0, 100)
                name = f"eval_M_finance_all_resp_{sched}_5_{lr:.0e}_fpq{'' if len(seeds) == 1 else f's{seed}'}.json"
                summ = {f"q_{i:03d}": {"aligned": float(a), "coherent": 90.0} for i, a in enumerate(aligned)}
                doc = {"summ_by_q": summ,
                       "eval_loss": {"avg_loss": None,
                                     "all_seq_losses": (seqs + (loss - 1.40) + rng.normal(0, 0.005, 300)).tolist()}}
                (out / name).write_text(json.dumps(doc))
                entries.append((name, sched, lr, seed))
    if len(seeds) > 1:
        lines = [f"  - {{file: {n}, run: {s}-{lr:.0e}-s{seed}, schedule: {s}_5, lr: {lr}, seed: {seed}, "
                 f"dataset: finance, model: M}}" for n, s, lr, seed in entries]
        (out / "runs.yaml").write_text("runs:\n" + "\n".join(lines) + "\n")
    return out


def test_a_better_aligned_schedule_at_matched_loss_is_not_supported(tmp_path):
    r = external_dynamics(write_runs(tmp_path, {"cosine": 0.0, "linear": 15.0, "constant": 0.0}), n_boot=1000)
    v = r.verdict()
    assert v.verdict == "not supported", v
    row = r.decisive_gap()
    assert row.unit_a == "linear_5" and 12 < row.gap < 18 and row.ci_low > 0
    assert r.pairs.iloc[0].unit_better == "linear_5" and r.pairs.iloc[0].loss_diff <= r.pairs.iloc[0].loss_ci_high
    assert "run-to-run noise not estimated" in " ".join(r.findings())


def test_schedules_on_one_curve_are_supported(tmp_path):
    r = external_dynamics(write_runs(tmp_path, {"cosine": 0.0, "linear": 0.0, "constant": 0.0}, n_q=200),
                          n_boot=1000)
    v = r.verdict()
    assert v.verdict == "supported", v
    assert r.equivalence_bound() < 5.0 and r.n_comparisons == 3 * 5
    assert (r.gaps.tost_low > -5).all() and (r.gaps.tost_high < 5).all()


def test_a_weak_gap_on_few_noisy_questions_is_inconclusive(tmp_path):
    r = external_dynamics(write_runs(tmp_path, {"cosine": 0.0, "linear": 4.0}, n_q=12, noise=15.0), n_boot=1000)
    assert r.verdict().verdict == "inconclusive", r.verdict()
    assert r.equivalence_bound() > 5.0


def test_replicate_seeds_give_the_run_to_run_noise(tmp_path):
    write_runs(tmp_path, {"cosine": 0.0, "linear": 0.0}, n_q=100, noise=1.0, seeds=(0, 1, 2), run_sd=3.0)
    r = external_dynamics(tmp_path, n_boot=500)
    assert r.noise_source == "replicate seeds" and len(r.noise) == 2 * 4 * 3
    assert 1.5 < r.sigma_run < 5.0  # the planted run-level sd is 3 points
    assert set(r.points.seed) == {0, 1, 2}
    assert "from 24 replicate seeds pairs" in r.verdict().uncertainty
    without = external_dynamics(tmp_path, n_boot=500)
    assert without.sigma_run == r.sigma_run  # deterministic under the seed


def test_em_rate_is_oriented_lower_is_better(tmp_path):
    import pandas as pd

    rows = []
    for run, em in (("a", 10), ("b", 40)):
        for q in range(6):
            rows += [{"question_id": f"q_{q}", "aligned": 10.0 if i < em // 10 else 90.0, "coherent": 90.0}
                     for i in range(10)]
        pd.DataFrame(rows).to_csv(tmp_path / f"{run}.csv", index=False)
        rows = []
    (tmp_path / "runs.yaml").write_text("runs:\n  - {file: a.csv, schedule: s1, eval_loss: 1.30}\n"
                                        "  - {file: b.csv, schedule: s2, eval_loss: 1.35}\n")
    r = external_dynamics(tmp_path, score="em_rate", n_boot=200)
    assert not r.higher_is_better and r.pairs.iloc[0].better == "a" and r.pairs.iloc[0].score_gap == pytest.approx(30)
    assert r.verdict().verdict == "inconclusive"  # one run per schedule: no loss range to match


def test_bad_inputs(tmp_path):
    with pytest.raises(ConfigError, match="score must be one of"):
        external_dynamics(tmp_path, score="helpful")
    (tmp_path / "eval_x.json").write_text(json.dumps({"summ_by_q": {"q": {"aligned": 1}}}))
    with pytest.raises(DataError, match="no run has both a aligned score and an eval loss"):
        external_dynamics(tmp_path / "eval_x.json")


def test_the_papers_35_schedule_runs(external):
    r = ep.dynamics(results=str(external / "em-generalization/results/claim1_schedules_fpq/*.json"))
    v = r.verdict()
    assert v.verdict in ("supported", "not supported", "inconclusive") and len(r.points) == 35
    assert r.points.unit.nunique() == 9 and r.noise_source == "near-identical schedules" and len(r.noise) == 8
    assert np.isfinite(r.sigma_run) and r.n_comparisons == 36 * 5
    assert "Bonferroni" in v.uncertainty and "TOST" in v.uncertainty
    assert len(r.pairs) == 5 and (r.pairs.loss_ci_low <= 0).all()
    # 24 questions = 8 questions x {plain, _json, _template}: the bootstrap resamples the 8
    assert r.meta["n_question_units"] == {"Qwen2.5-32B-Instruct/finance": 8}
