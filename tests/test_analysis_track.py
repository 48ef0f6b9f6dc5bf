"""`TrackResult` on planted projection tables: the shift, its random-direction control, and the warnings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.track.result import TrackResult

N_Q, N_RANDOM, LAYER = 20, 20, 3


def _result(shift: float, seed: int = 0) -> TrackResult:
    """Two checkpoints; every question's projection moves by ``shift`` (+ noise); random directions move
    N(0, 0.1) at the same layer."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal(N_Q)
    proj = pd.DataFrame([{"step": step, "direction": "mean_diff", "layer": LAYER, "question_id": f"q{i}",
                          "projection": base[i] + (shift + 0.05 * rng.standard_normal() if step else 0.0)}
                         for step in (0, 10) for i in range(N_Q)])
    r0, r1 = rng.standard_normal(N_RANDOM), 0.1 * rng.standard_normal(N_RANDOM)
    drift = pd.DataFrame([{"step": step, "layer": LAYER, "drift_norm": float(step), "mean_norm": 1.0,
                           **{f"random_{r}": r0[r] + (r1[r] if step else 0.0) for r in range(N_RANDOM)}}
                          for step in (0, 10)])
    return TrackResult(projections=proj, drift=drift, layers={"mean_diff": LAYER}, n_random=N_RANDOM,
                       meta={"run": "planted"})


def test_planted_shift_beats_random_directions(tmp_path):
    res = _result(1.0)
    s = res.shifts["mean_diff"]
    assert s.delta == pytest.approx(1.0, abs=0.05) and s.ci_low > 0.9 and s.z > 5 and s.n_questions == N_Q
    assert not s.explained_by_control and not s.wrong_sign
    assert res.findings()[0].startswith("Along the base-model mean_diff direction at layer 3")
    n = res.numbers()
    assert n["mean_diff_delta"] == pytest.approx(s.delta) and n["step_first"] == 0 and n["step_last"] == 10
    out = res.save(tmp_path / "track")
    import json

    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == [0, 10] and summary["shifts"]["mean_diff"]["z"] == pytest.approx(s.z)
    assert summary["inputs"] == {"run": "planted"} and (out / "drift.parquet").is_file()


def test_control_or_wrong_sign_is_said_first():
    small = _result(0.05)  # random directions move as much
    assert small.shifts["mean_diff"].explained_by_control
    assert small.findings()[0].startswith("The random-direction control explains the mean_diff shift")
    wrong = _result(-1.0)
    assert wrong.shifts["mean_diff"].wrong_sign
    assert wrong.findings()[0].startswith("Wrong sign")
    assert len(wrong.findings()) == len(_result(1.0).findings()) + 1
    blind = TrackResult(projections=small.projections, drift=small.drift[["step", "layer", "drift_norm", "mean_norm"]],
                        layers={"mean_diff": LAYER}, n_random=0)
    assert blind.findings()[0].startswith("No random-direction control") and np.isnan(blind.shifts["mean_diff"].z)
