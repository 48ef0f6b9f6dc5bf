"""`ep.dynamics` (claim 1) and `ep.monitor` on constructed checkpoint tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.dynamics import dynamics
from emprobe.analysis.monitor import monitor
from emprobe.analysis.dynamics.compute import is_aligned_control
from emprobe.analysis.dynamics.matched_loss import first_crossing
from emprobe.analysis.monitor.compute import em_labels
from emprobe.errors import ConfigError, DataError

SCHEDULES = {"constant": 2.0, "cosine": 2.15, "wsd": 2.05}  # final in-domain val loss of each schedule
STEPS = (0, 4, 8, 12, 16, 20)
N_Q = 30
FAST = {"n_permutations": 20, "n_boot": 600}


def _sweep(planted: float = 0.0, seed: int = 0, schedules=SCHEDULES, control: bool = True, noise: float = 0.01,
           seeds=(0, 1, 2), seed_sd: float = 0.01, em: float = 0.15, control_change: float = 0.03,
           n_q: int = N_Q) -> pd.DataFrame:
    """Per-question margins of a constructed sweep: every schedule on one curve margin = em * (3 - loss) + question
    offset + noise, two lrs x ``seeds`` per schedule, each run shifted by its own seed effect (sd ``seed_sd``,
    growing from 0 at step 0, the shared base model); ``planted`` lowers cosine's margin (better aligned) after
    step 0. The aligned-data control (trained on ``*-aligned`` data) changes the margin by ``control_change``, so
    the EM-specific rise is about ``em * 0.887 - control_change`` (less a third of ``planted``)."""
    rng = np.random.default_rng(seed)
    offsets = 0.1 * rng.standard_normal(n_q)
    rows = []
    runs = [(s, lr, sd, "builtin:risky-finance", end) for s, end in schedules.items() for lr in (1e-3, 3e-3)
            for sd in seeds]
    if control:
        runs.append(("constant", 1e-3, seeds[0], "builtin:risky-finance-aligned", 2.0))
    for sched, lr, sd, data, end in runs:
        run = f"{data.split(':')[1]}__{sched}__{lr:g}__s{sd}"
        run_effect = seed_sd * rng.standard_normal()
        for step in STEPS:
            frac = step / STEPS[-1]
            loss = 3.0 - (3.0 - end) * np.sqrt(frac) * (0.9 if lr == 1e-3 else 1.0)
            trend = control_change * frac if "aligned" in data else em * (3.0 - loss) + run_effect * frac
            margin = -0.2 + trend + offsets + noise * rng.standard_normal(n_q)
            if sched == "cosine" and step > 0 and "aligned" not in data:
                margin = margin - planted
            rows += [{"run": run, "schedule": sched, "lr": lr, "seed": sd, "data": data, "step": step,
                      "val_loss": loss, "question_id": f"q{i}", "margin": float(m)} for i, m in enumerate(margin)]
    return pd.DataFrame(rows)


def test_planted_better_aligned_schedule_is_not_supported(tmp_path):
    res = dynamics(_sweep(planted=0.05), **FAST)
    v, (_, row) = res.verdict(), res.decision()
    assert v.verdict == "not supported" and "Holm p" in v.reason
    assert row.better == "cosine" and row.ci_low > 0 and row.gap == pytest.approx(0.05, abs=0.01)  # a − cosine
    sesoi = res.limits["builtin:risky-finance"]
    assert 0.02 < sesoi.value < 0.035 and "25% of the EM-specific rise" in sesoi.text and "SESOI" in v.reason
    assert res.findings()[0].startswith("Claim 1 is not supported")
    n = res.numbers()
    assert n["gap_significant"] and n["n_schedules"] == 3 and n["n_comparisons"] == 12 and n["runs_per_schedule"] == 3
    assert n["em_established"] and n["em_specific_rise"] == pytest.approx(0.15 * 0.887 - 0.03 - 0.05 / 3, abs=0.01)
    out = res.save(tmp_path / "dyn")
    assert {"matched_loss.parquet", "schedule_gaps.parquet", "em_rise.parquet", "margins.parquet",
            "plot.png"} <= {p.name for p in out.iterdir()}


def test_identical_schedules_with_seed_noise_are_supported_and_the_noise_floor_is_reported():
    res = dynamics(_sweep(seed=1, seed_sd=0.01), **FAST)
    v = res.verdict()
    assert v.verdict == "supported" and "TOST" in v.reason
    gaps = res.comparison.gaps
    assert (gaps.better == "").all() and (gaps.df < 60).all()  # few runs: t intervals on few df, not normal ones
    assert res.equivalence_bound() < res.limits["builtin:risky-finance"].value
    assert res.noise["n_cells"] == 6 and res.noise["sd"] == pytest.approx(0.01, rel=0.6)
    assert any(f.startswith("Noise floor: the seed-to-seed SD") for f in res.findings())
    levels = sorted(res.comparison.matched.loss_level.unique())  # lower end + quartiles of the shared range
    assert levels == pytest.approx([2.15 + q * 0.85 for q in (0.0, 0.25, 0.5, 0.75)])
    one = dynamics(_sweep(seed=1, seeds=(0,)), **FAST)  # one seed: said, and the CIs cover questions (and lrs) only
    assert np.isnan(one.noise["sd"]) and any(f.startswith("1 seed per") for f in one.findings())
    # as a study writes it: the control run named by a column, under its dataset's name (same schedule and lr as a
    # misaligned run): it is no second seed of that cell, and it still gives the EM-specific rise
    study = _sweep(seed=1, seeds=(0,)).assign(control=lambda t: t.data.str.endswith("-aligned"), data="risky-finance")
    res = dynamics(study, **FAST)
    assert np.isnan(res.noise["sd"]) and res.noise["n_runs"] == 0 and res.rises.n_control_runs.tolist() == [1]


def test_a_significant_but_tiny_gap_is_practical_equivalence():
    res = dynamics(_sweep(planted=0.008, noise=0.003, seed_sd=0.002), **FAST)
    _, row = res.decision()
    assert res.comparison.gaps.better.eq("cosine").any()  # shown beyond its CI ...
    assert res.verdict().verdict == "supported"  # ... but every TOST interval lies inside ±SESOI
    # the margin is the user's: an absolute SESOI below the planted gap calls it better aligned
    assert dynamics(_sweep(planted=0.008, noise=0.003, seed_sd=0.002), sesoi=0.004, **FAST).verdict().verdict == \
        "not supported"


def test_weak_effect_with_seed_noise_is_inconclusive():
    """A gap of half the SESOI among noisy seeds: no gap of the SESOI's size is shown, none is ruled out."""
    res = dynamics(_sweep(planted=0.012, seed_sd=0.03), **FAST)
    v = res.verdict()
    assert v.verdict == "inconclusive" and "too few questions or runs" in v.reason


def test_seed_noise_alone_rarely_gives_not_supported():
    """Identical schedules, seed SD 0.02 nats/token: the question-only bootstrap called "not supported" in about 60 %
    of such sweeps; with the runs in the bootstrap (and Holm over the gaps) it must stay rare."""
    verdicts = [dynamics(_sweep(seed=100 + i, seed_sd=0.02, schedules={"constant": 2.0, "cosine": 2.05}),
                         n_permutations=5, n_boot=400).verdict().verdict for i in range(12)]
    assert verdicts.count("not supported") <= 1, verdicts


def test_no_em_at_all_is_inconclusive_even_with_flat_margins():
    flat = _sweep(em=0.0, control_change=0.0, seed=3)
    for kw in ({}, {"sesoi": 0.02}):  # fractional or absolute SESOI: flat margins never give "supported"
        v = dynamics(flat, **kw, **FAST).verdict()
        assert v.verdict == "inconclusive" and "no EM established" in v.reason and "touches 0" in v.reason
    # the control rises as much as the misaligned runs: EM is not specific, so no fraction of it is a margin
    same = _sweep(em=0.15, control_change=0.13, seed=4, seed_sd=0.003)
    res = dynamics(same, **FAST)
    assert res.verdict().verdict == "inconclusive" and "no EM-specific rise" in res.verdict().reason
    assert dynamics(same, sesoi=0.02, **FAST).verdict().verdict == "supported"  # an absolute margin still works


def test_controls_never_enter_the_schedule_comparison():
    df = _sweep(seed=1)
    res = dynamics(df, **FAST)  # control found by its data name
    ctrl = "risky-finance-aligned__constant__0.001__s0"
    assert res.controls == (ctrl,) and res.verdict().verdict == "supported"
    assert res.comparison.matched.n_runs.max() == 6  # constant still has its 6 runs, not 7
    assert ctrl not in set(res.correlations[~res.correlations.control].scope)
    assert res.correlations.set_index("scope").loc[ctrl, "control"]
    assert res.rises.n_control_runs.iloc[0] == 1 and res.rises.data.iloc[0] == "builtin:risky-finance"
    med = df.assign(data=df.data.str.replace("risky-finance", "bad-medical"), run=df.run + "-med")
    two = pd.concat([df, med]).rename(columns={"data": "dataset"})
    both = dynamics(two, **FAST)  # schedules compared within each dataset, each with its own EM rise
    assert set(both.comparison.gaps.data) == {"builtin:risky-finance", "builtin:bad-medical"}
    assert len(both.comparison.gaps) == 2 * 12 and len(both.rises) == 2 and both.rises.n_control_runs.tolist() == [1, 1]
    alone = df.assign(schedule=np.where(df.run == ctrl, "linear", df.schedule))
    assert set(dynamics(alone, **FAST).comparison.matched.schedule) == set(SCHEDULES)
    explicit = dynamics(df, control_runs=[ctrl, df.run.iloc[0]], **FAST)
    assert len(explicit.controls) == 2
    with pytest.raises(ConfigError, match="not among the runs"):
        dynamics(df, control_runs=["nope"])
    with pytest.raises(ConfigError, match="sesoi_fraction"):
        dynamics(df, sesoi_fraction=0.0)
    assert is_aligned_control("builtin:bad-medical-aligned") and is_aligned_control("x/bad_medical_aligned.jsonl.gz")
    assert not is_aligned_control("builtin:risky-finance")


def test_inconclusive_cases():
    one = _sweep(schedules={"constant": 2.0})
    v = dynamics(one, **FAST).verdict()
    assert v.verdict == "inconclusive" and "1 schedule(s)" in v.reason
    apart = _sweep(schedules={"constant": 2.0, "cosine": 2.1})  # cosine's losses shifted out of constant's range
    apart.loc[apart.schedule == "cosine", "val_loss"] += 5.0
    v = dynamics(apart, **FAST).verdict()
    assert v.verdict == "inconclusive" and "share no" in v.reason
    barely = dynamics(_sweep(schedules={"constant": 2.0, "cosine": 2.9}), sesoi=0.05, **FAST)  # cosine hardly trains
    assert barely.numbers()["shared_loss_fraction"] == pytest.approx(0.1)
    assert barely.verdict().verdict == "inconclusive" and "share only 10%" in barely.verdict().reason
    single = _sweep(planted=0.05, seeds=(0,))
    single = single[single.lr == 1e-3]
    wide = single.groupby(["run", "schedule", "lr", "data", "step", "val_loss"], as_index=False) \
        .margin.mean().rename(columns={"margin": "ood_score"})
    res = dynamics(wide, sesoi=0.05, **FAST)  # one row per checkpoint and one run per schedule: no CI at all
    assert res.verdict().verdict == "inconclusive" and "no CI" in res.verdict().reason
    assert res.plot() is not None
    with pytest.raises(ConfigError, match="lacks columns"):
        dynamics(wide.drop(columns="schedule"))
    with pytest.raises(ConfigError, match="every run is an aligned-data control"):
        dynamics(one.assign(control=True))


def test_first_crossing_and_rho_caveat():
    assert first_crossing(np.array([3.0, 2.0, 1.0]), 1.5) == (1, 0.5)
    assert first_crossing(np.array([3.0, 2.0, 2.5, 1.0]), 2.2) == (0, pytest.approx(0.8))
    assert first_crossing(np.array([3.0, 2.0]), 1.0) is None
    res = dynamics(_sweep(seeds=(0,), control=False, noise=0.002), **FAST)
    corr = res.correlations.set_index("scope")
    assert (corr.drop("all runs").spearman_rho < -0.8).all()  # any monotone fine-tune gives ρ near −1
    assert any("give ρ = −1 for any fine-tune" in f for f in res.findings())
    assert res.numbers()["n_checkpoints"] == 6 * len(STEPS)


def _monitor_tables():
    rows = []
    # misaligned runs: margin rises as loss falls; control run: flat margin
    for run, slope in (("mis-cos", 0.4), ("mis-const", 0.6), ("ctrl", 0.0)):
        for step, loss in zip((0, 5, 10, 15, 25), (2.0, 1.6, 1.2, 0.9, 0.7)):
            rows.append({"run": run, "step": step, "ood_score": -0.5 + slope * (2.0 - loss)})
    return pd.DataFrame(rows)


def test_em_labels_and_monitor(tmp_path):
    scores = _monitor_tables()
    labels = em_labels(scores, threshold=0.1)
    assert not labels[scores.run.to_numpy() == "ctrl"].any()
    assert labels[(scores.run == "mis-const").to_numpy() & (scores.step >= 5).to_numpy()].all()
    rng = np.random.default_rng(0)
    drift = scores[["run", "step"]].copy()
    # drift tracks the margin rise (a working detector) plus noise; a second layer is pure noise
    rise = scores.ood_score - scores.groupby("run").ood_score.transform("first")
    drift["drift_best"] = rise.to_numpy() + 0.02 * rng.standard_normal(len(drift))
    drift["drift_L3"] = drift["drift_best"]
    drift["drift_L7"] = rng.standard_normal(len(drift))
    res = monitor(scores, drift, threshold=0.1, n_permutations=300)
    assert res.auroc > 0.95 and res.p_permutation < 0.01 and res.numbers()["auroc_leave_one_run_out"] > 0.7
    assert res.findings()[0].startswith("Direction drift alone")
    assert (res.save(tmp_path / "mon") / "plot.png").is_file()
    # no signal: drift is noise -> the permutation control explains the AUROC, said first
    noise = drift.assign(drift_best=rng.standard_normal(len(drift)), drift_L3=rng.standard_normal(len(drift)))
    res = monitor(scores, noise, threshold=0.1, n_permutations=300)
    assert res.p_permutation >= 0.05 and "control explains" in res.findings()[0] or "Wrong sign" in res.findings()[0]
    flipped = monitor(scores, drift.assign(drift_best=-drift.drift_best), threshold=0.1, n_permutations=100)
    assert flipped.findings()[0].startswith("Wrong sign")
    with pytest.raises(DataError, match="cannot be scored"):
        monitor(scores, drift, threshold=10.0)
    with pytest.raises(ConfigError, match="drift features"):
        monitor(scores, "some/direction")
