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


def _sweep(planted: float = 0.0, seed: int = 0, schedules=SCHEDULES, control: bool = False,
           noise: float = 0.01) -> pd.DataFrame:
    """Per-question margins of a constructed sweep: every schedule on one curve margin = f(loss) + question
    offset + noise (two lrs each); ``planted`` lowers cosine's margin (better aligned) after step 0."""
    rng = np.random.default_rng(seed)
    offsets = 0.1 * rng.standard_normal(N_Q)
    rows = []
    runs = [(s, lr, "builtin:risky-finance", end) for s, end in schedules.items() for lr in (1e-3, 3e-3)]
    if control:  # an aligned-data control, far better aligned than anything: it must not count
        runs.append(("constant", 1e-3, "builtin:risky-finance-aligned", 2.0))
    for sched, lr, data, end in runs:
        run = f"{data.split(':')[1]}__{sched}__{lr:g}"
        for step in STEPS:
            frac = step / STEPS[-1]
            loss = 3.0 - (3.0 - end) * np.sqrt(frac) * (0.9 if lr == 1e-3 else 1.0)
            margin = -0.2 + 0.15 * (3.0 - loss) + offsets + noise * rng.standard_normal(N_Q)
            if "aligned" in data:
                margin = margin - 0.5 * frac
            elif sched == "cosine" and step > 0:
                margin = margin - planted
            rows += [{"run": run, "schedule": sched, "lr": lr, "data": data, "step": step, "val_loss": loss,
                      "question_id": f"q{i}", "margin": float(m)} for i, m in enumerate(margin)]
    return pd.DataFrame(rows)


def test_planted_better_aligned_schedule_is_detected(tmp_path):
    res = dynamics(_sweep(planted=0.05), n_permutations=100)
    v = res.verdict()
    assert v.verdict == "not supported"
    row = res.decisive_gap()
    assert row.better == "cosine" and row.ci_high < 0  # the CI excludes 0
    assert row.gap == pytest.approx(-0.05, abs=0.01)
    assert "not supported" in res.findings()[0] and "cosine" in res.findings()[0]
    n = res.numbers()
    assert n["gap_significant"] and n["n_schedules"] == 3 and n["n_comparisons"] == 12
    out = res.save(tmp_path / "dyn")
    assert {"matched_loss.parquet", "schedule_gaps.parquet", "best_at_loss.parquet", "margins.parquet",
            "plot.png"} <= {p.name for p in out.iterdir()}


def test_a_significant_but_tiny_gap_is_practical_equivalence():
    res = dynamics(_sweep(planted=0.006), n_permutations=100)
    row, v = res.decisive_gap(), res.verdict()
    assert row.better == "cosine" and row.ci_high < 0  # beyond the CI ...
    assert abs(row.gap) < res.min_gap and v.verdict == "supported"  # ... but below the smallest gap of interest
    assert "smallest gap of interest" in v.reason and "Claim 1 is supported" in res.findings()[0]
    # the margin of equivalence is the user's: below the planted gap it counts as better aligned
    assert dynamics(_sweep(planted=0.006), n_permutations=50, min_gap=0.004).verdict().verdict == "not supported"


def test_nothing_planted_is_supported():
    res = dynamics(_sweep(planted=0.0, seed=1), n_permutations=100)
    assert res.verdict().verdict == "supported" and res.shared_fraction == pytest.approx(0.85)
    gaps = res.comparison.gaps
    assert (gaps.better == "").all() and (gaps.ci_low < 0).all() and (gaps.ci_high > 0).all()
    assert gaps.gap.abs().max() < 0.02
    levels = sorted(res.comparison.matched.loss_level.unique())  # lower end + quartiles of the shared range
    assert levels == pytest.approx([2.15 + q * 0.85 for q in (0.0, 0.25, 0.5, 0.75)])
    assert "no schedule is better aligned" in res.findings()[0]
    assert res.equivalence_bound() < res.min_gap and "within ±0.02" in res.verdict().reason


def test_no_significant_gap_with_wide_cis_is_not_equivalence():
    """Absence of a significant gap is not evidence of equivalence: noisy per-question margins (CIs wider than
    the smallest gap of interest) give inconclusive, not supported."""
    res = dynamics(_sweep(planted=0.0, seed=1, noise=0.1), n_permutations=100)
    gaps = res.comparison.gaps
    assert (gaps.better == "").all() and res.equivalence_bound() > res.min_gap
    v = res.verdict()
    assert v.verdict == "inconclusive" and "too few questions" in v.reason
    assert res.numbers()["equivalence_bound"] == pytest.approx(res.equivalence_bound())


def test_controls_never_enter_the_schedule_comparison():
    df = _sweep(planted=0.0, seed=1, control=True)
    res = dynamics(df, n_permutations=100)  # control found by its data name
    ctrl = "risky-finance-aligned__constant__0.001"
    assert res.controls == (ctrl,) and res.verdict().verdict == "supported"
    assert res.comparison.matched.n_runs.max() == 2  # constant still has its 2 runs, not 3
    assert ctrl not in set(res.correlations[~res.correlations.control].scope)
    assert res.correlations.set_index("scope").loc[ctrl, "control"]
    med = df[df.run != ctrl].assign(data="builtin:bad-medical", run=lambda x: x.run + "-med")
    two = pd.concat([df, med]).rename(columns={"data": "dataset"})
    per_data = dynamics(two, n_permutations=50).comparison.gaps  # schedules compared within each dataset
    assert set(per_data.data) == {"builtin:risky-finance", "builtin:bad-medical"} and len(per_data) == 2 * 12
    same = dynamics(df[df.run != ctrl], n_permutations=100)
    pd.testing.assert_frame_equal(res.comparison.gaps, same.comparison.gaps)
    # a control that is the only run of its schedule is not a schedule either
    alone = df.assign(schedule=np.where(df.run == ctrl, "linear", df.schedule))
    assert set(dynamics(alone, n_permutations=50).comparison.matched.schedule) == set(SCHEDULES)
    explicit = dynamics(df, control_runs=[ctrl, df.run.iloc[0]], n_permutations=50)
    assert len(explicit.controls) == 2
    with pytest.raises(ConfigError, match="not among the runs"):
        dynamics(df, control_runs=["nope"])
    assert is_aligned_control("builtin:bad-medical-aligned") and is_aligned_control("x/bad_medical_aligned.jsonl.gz")
    assert not is_aligned_control("builtin:risky-finance")


def test_inconclusive_cases():
    one = _sweep(schedules={"constant": 2.0})
    v = dynamics(one, n_permutations=50).verdict()
    assert v.verdict == "inconclusive" and "1 schedule(s)" in v.reason
    apart = _sweep(schedules={"constant": 2.0, "cosine": 2.1})  # cosine's losses shifted out of constant's range
    apart.loc[apart.schedule == "cosine", "val_loss"] += 5.0
    v = dynamics(apart, n_permutations=50).verdict()
    assert v.verdict == "inconclusive" and "share no" in v.reason
    barely = dynamics(_sweep(schedules={"constant": 2.0, "cosine": 2.9}), n_permutations=50)  # cosine hardly trains
    assert barely.numbers()["shared_loss_fraction"] == pytest.approx(0.1)
    assert barely.verdict().verdict == "inconclusive" and "share only 10%" in barely.verdict().reason
    wide = _sweep(planted=0.05).groupby(["run", "schedule", "lr", "data", "step", "val_loss"], as_index=False) \
        .margin.mean().rename(columns={"margin": "ood_score"})
    res = dynamics(wide, n_permutations=50)  # one row per checkpoint: no CI over questions
    assert res.verdict().verdict == "inconclusive" and "per-question" in res.verdict().reason
    assert res.plot() is not None
    with pytest.raises(ConfigError, match="lacks columns"):
        dynamics(wide.drop(columns="schedule"))
    with pytest.raises(ConfigError, match="every run is an aligned-data control"):
        dynamics(one.assign(control=True))


def test_first_crossing_and_rho_caveat():
    assert first_crossing(np.array([3.0, 2.0, 1.0]), 1.5) == (1, 0.5)
    assert first_crossing(np.array([3.0, 2.0, 2.5, 1.0]), 2.2) == (0, pytest.approx(0.8))
    assert first_crossing(np.array([3.0, 2.0]), 1.0) is None
    res = dynamics(_sweep(planted=0.0), n_permutations=100)
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
