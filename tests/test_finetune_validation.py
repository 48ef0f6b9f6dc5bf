"""Validation of a run: CIs over held-out examples, the paired change since step 0, the split size the CI needs,
and step 0 validated once per dataset in one process."""

from __future__ import annotations

import numpy as np
import pytest

from emprobe.errors import ConfigError
from emprobe.finetuning import FinetuneConfig, finetune, load_run
from emprobe.finetuning.testing import tiny_config
from emprobe.finetuning.validation import StepZeroCache, Validation, change_ci, loss_ci, split_size


def _planted(n: int, sd: float, seed: int = 0, shift: float = 0.0) -> Validation:
    rng = np.random.default_rng(seed)
    counts = rng.integers(20, 60, n)
    per_token = 3.0 + shift + rng.normal(0, sd, n)
    return Validation(per_token * counts, counts)


def test_cis_cover_the_truth_and_pairing_tightens_the_change():
    v = _planted(400, 0.5)
    lo, hi = loss_ci(v.sums, v.counts)
    assert lo < 3.0 < hi and hi - lo < 0.15
    base = _planted(40, 0.5)  # the same examples, every loss 0.3 lower plus a little noise of their own
    later = Validation(base.sums - (0.3 + np.random.default_rng(1).normal(0, 0.02, 40)) * base.counts, base.counts)
    clo, chi = change_ci(later.sums, later.counts, base.sums, base.counts)
    llo, lhi = loss_ci(later.sums, later.counts)
    assert clo < -0.3 < chi and (chi - clo) < (lhi - llo) / 5  # paired: the spread of difficulty cancels
    info = later.info(base)
    assert info["val_examples"] == 40 and info["val_loss_change"] == pytest.approx(later.loss - base.loss)
    assert Validation.from_info(info).loss == pytest.approx(later.loss, abs=1e-5)
    assert np.isnan(loss_ci(v.sums[:1], v.counts[:1])[0])


def test_split_size_is_the_fewest_examples_that_reach_the_ci():
    pool = _planted(400, 0.5)
    n = split_size(pool, 0.1)
    assert n == pytest.approx((1.96 * 0.5 / 0.1) ** 2, rel=0.2)  # sample-size formula with sd 0.5
    lo, hi = loss_ci(pool.sums[:n], pool.counts[:n])
    assert (hi - lo) / 2 == pytest.approx(0.1, rel=0.3)  # the realised CI is about the target
    assert split_size(pool, 10.0) == 8 and split_size(pool, 1e-4) == 400 and split_size(pool, None) == 400
    assert split_size(_planted(5, 0.5), 0.01) == 5
    with pytest.raises(ConfigError, match="`val_ci` must be > 0"):
        FinetuneConfig(data="x", out="y", val_ci=0).validate()


def test_run_validates_step0_once_and_keeps_the_split_the_ci_needs(tmp_path, tiny_model_dir):
    StepZeroCache._store.clear()
    quiet = dict(log=lambda m: None)
    a = finetune(tiny_config(tiny_model_dir, tmp_path / "a", val_max_examples=16, val_ci=0.5), **quiet)
    b = finetune(tiny_config(tiny_model_dir, tmp_path / "b", val_max_examples=16, val_ci=0.5, seed=1), **quiet)
    full = finetune(tiny_config(tiny_model_dir, tmp_path / "full", val_max_examples=16, val_ci=None, seed=1), **quiet)
    n = a.checkpoint(0).info["val_examples"]
    assert 8 <= n < 16, "the tiny model's losses vary little: the CI needs fewer than all 16 examples"
    for run in (a, b):
        assert [c.info["val_examples"] for c in run.checkpoints()] == [n] * 3
        assert all(c.info["val_loss_change_ci"][0] <= c.info["val_loss_change"] <= c.info["val_loss_change_ci"][1]
                   for c in run.checkpoints() if c.step)
    assert [t.get("validation_shared", False) for t in (a.manifest["timings"]["checkpoints"][0],
                                                         b.manifest["timings"]["checkpoints"][0])] == [False, True]
    assert b.checkpoint(0).val_loss == a.checkpoint(0).val_loss
    assert full.checkpoint(4).info["val_examples"] == 16  # val_ci None: every example, as before
    f0 = np.array(full.checkpoint(4).info["val_example_losses"])
    b0 = np.array(b.checkpoint(4).info["val_example_losses"])
    np.testing.assert_allclose(b0, f0[:n], rtol=1e-4)  # the kept split is the first n of the same examples
    resumed = finetune(tiny_config(tiny_model_dir, tmp_path / "a", val_max_examples=16, val_ci=0.5, resume=True),
                       **quiet)
    assert load_run(resumed.path).complete
    from emprobe.finetuning.result import TrainingResult

    res = TrainingResult.from_runs({"a": a, "full": full}, labels={}, controls={"full"}, reference="a",
                                   control_run="full")
    num, ck = res.numbers(), a.checkpoint(4).info
    assert num["val_ci"] == 0.5 and num["val_examples"] == n
    assert (num["val_loss_change_ci_low"], num["val_loss_change_ci_high"]) == tuple(ck["val_loss_change_ci"])
    assert f"whose 95% CI half-width is at most 0.5 nats/token; the misaligned run's last checkpoint: {n} of " \
           "them" in res.uncertainty
    assert "held-out examples)" in res.findings()[0] and "on 16 held-out examples" in res.findings()[1]
    assert res.to_section()["uncertainty"] == res.uncertainty
