"""`emprobe dynamics` / `emprobe monitor` summaries on constructed checkpoint tables with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.dynamics_study import dynamics_from_table, em_labels, monitor_from_tables
from emprobe.errors import DataError


def _scores() -> pd.DataFrame:
    rows = []
    # misaligned runs: margin rises as loss falls; control run: flat margin
    for run, sched, slope in (("mis-cos", "cosine", 0.4), ("mis-const", "constant", 0.6), ("ctrl", "cosine", 0.0)):
        for step, loss in zip((0, 5, 10, 15, 25), (2.0, 1.6, 1.2, 0.9, 0.7)):
            rows.append({"run": run, "schedule": sched, "step": step, "val_loss": loss,
                         "ood_score": -0.5 + slope * (2.0 - loss)})
    return pd.DataFrame(rows)


def test_dynamics_summary(tmp_path):
    res = dynamics_from_table(_scores(), n_permutations=200)
    corr = res.tables["correlations"].set_index("scope")
    assert corr.loc["mis-cos", "spearman_rho"] == pytest.approx(-1.0)
    assert corr.loc["ctrl", "spearman_rho"] == 0.0
    assert corr.loc["all runs", "spearman_rho"] < -0.5
    assert "Spearman ρ" in res.findings[0]
    out = res.save(tmp_path / "dyn")
    assert (out / "best_at_loss.parquet").is_file() and (out / "plot.png").is_file()


def test_em_labels_and_monitor():
    scores = _scores()
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
    res = monitor_from_tables(scores, drift, threshold=0.1, n_permutations=300)
    assert res.summary["auroc"] > 0.95 and res.summary["p_permutation"] < 0.01
    assert res.summary["auroc_leave_one_run_out"] > 0.7
    with pytest.raises(DataError, match="cannot be scored"):
        monitor_from_tables(scores, drift, threshold=10.0)
