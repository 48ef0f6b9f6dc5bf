"""`emprobe overlap` core on constructed activations: a planted shared shift vs independent random shifts."""

from __future__ import annotations

import numpy as np
import pytest

from emprobe.analysis.shift_overlap import overlap_tables, summarise_overlap

D, L = 128, 2


def _acts(rng, n):
    return rng.standard_normal((n, L, D))


def test_planted_shift_gives_overlap_one_and_random_gives_k_over_d(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.standard_normal(D)
    bt, be = _acts(rng, 48), _acts(rng, 30)
    # layer 0: every prompt shifts along v (shared); layer 1: independent random shifts
    tt, te = bt.copy(), be.copy()
    tt[:, 0] += np.outer(rng.uniform(1, 2, 48), v) + 0.01 * rng.standard_normal((48, D))
    te[:, 0] += np.outer(rng.uniform(1, 2, 30), v) + 0.01 * rng.standard_normal((30, D))
    tt[:, 1] += rng.standard_normal((48, D))
    te[:, 1] += rng.standard_normal((30, D))
    questions = [f"q{i // 3}" for i in range(30)]
    sweep, shifts = overlap_tables(bt, tt, be, te, [0, 1], questions, ks=(1, 4), n_random=100, n_permutations=200)
    planted = sweep[(sweep.layer == 0) & (sweep.k == 1)].iloc[0]
    assert planted.overlap > 0.99 and planted.z > 20
    rand = sweep[sweep.layer == 1]
    for _, row in rand.iterrows():  # independent shifts: overlap near the random expectation k/d
        assert row.overlap < 5 * row.k / D and abs(row.z) < 4
    s0 = shifts.set_index("layer")
    assert s0.loc[0, "mean_shift_cosine"] > 0.99 and abs(s0.loc[1, "mean_shift_cosine"]) < 0.3
    res = summarise_overlap(sweep, shifts, D, {"test": True})
    assert "layer 0" in res.findings[0] and "σ above the random control" in res.findings[0]
    out = res.save(tmp_path / "ov")
    assert {p.name for p in out.iterdir()} == {"table.parquet", "shifts.parquet", "plot.png", "summary.json",
                                                "summary.txt"}


def test_pair_correlation_detects_prompt_dependent_shifts():
    rng = np.random.default_rng(1)
    # shift = a fixed linear map of the prompt activation: similar prompts get similar shifts
    m = rng.standard_normal((D, D)) / np.sqrt(D)
    bt, be = _acts(rng, 64), _acts(rng, 40)
    tt, te = bt + bt @ m, be + be @ m
    questions = [f"q{i // 2}" for i in range(40)]
    _, shifts = overlap_tables(bt, tt, be, te, [0, 1], questions, ks=(1,), n_random=20, n_permutations=300)
    assert (shifts.pair_rho > 0.3).all() and (shifts.pair_p < 0.01).all()


def test_shape_mismatch_is_an_error():
    from emprobe.errors import ConfigError

    rng = np.random.default_rng(2)
    with pytest.raises(ConfigError, match="differ in shape"):
        overlap_tables(_acts(rng, 4), _acts(rng, 5), _acts(rng, 3), _acts(rng, 3), [0, 1], ["a"] * 3)
