"""`overlap` (claim 3) on constructed activations: a common shift in both runs, a specific shared subspace in
one, the aligned control as the comparison that can fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emprobe.analysis.overlap import OverlapResult
from emprobe.analysis.overlap.compute import overlap_from_activations
from emprobe.analysis.overlap.shifts import run_tables
from emprobe.analysis.stats.subspace import gram_overlap, overlap, pca_basis
from emprobe.errors import ConfigError

D, L, N_TRAIN, N_Q = 64, 2, 48, 40


def _runs(specific: dict[str, float], n_q: int = N_Q, seed: int = 0):
    """Base activations (4 latent directions + noise) and, per run, tuned activations: every run shifts every
    prompt along one common direction (+ noise) at layer 0; a run with strength ``s > 0`` also shifts train and
    eval prompts inside one shared 2-d subspace, by ``s`` times a linear map of the prompt's latent (similar
    prompts, similar shifts). Layer 1 gets independent noise shifts only."""
    rng = np.random.default_rng(seed)
    v = np.linalg.qr(rng.standard_normal((D, 4)))[0]
    sub = np.linalg.qr(rng.standard_normal((D, 2)))[0]
    common, mix = 3 * rng.standard_normal(D) / np.sqrt(D), rng.standard_normal((4, 2))
    zt, zq = rng.standard_normal((N_TRAIN, 4)), rng.standard_normal((n_q, 4))
    bt = (3 * zt @ v.T)[:, None, :] + rng.standard_normal((N_TRAIN, L, D))
    be = (3 * zq @ v.T)[:, None, :] + rng.standard_normal((n_q, L, D))
    runs = {}
    for name, strength in specific.items():
        shifted = []
        for b, z in ((bt, zt), (be, zq)):
            t = b.copy()
            t[:, 0] += common + 0.15 * rng.standard_normal((len(b), D)) + strength * (z @ mix) @ sub.T
            t[:, 1] += 0.5 * rng.standard_normal((len(b), D))
            shifted.append(t)
        runs[name] = tuple(shifted)
    return bt, be, runs, [f"q{i}" for i in range(n_q)]


def _result(specific: dict[str, float], n_q: int = N_Q, **kw) -> OverlapResult:
    bt, be, runs, qs = _runs(specific, n_q)
    return overlap_from_activations(bt, be, runs, [0, 1], qs, ks=(1, 2, 4), n_random=50, n_boot=300,
                                    n_permutations=200, **kw)


def test_specific_subspace_is_separated_from_the_aligned_control(tmp_path):
    res = _result({"misaligned": 3.0, "control": 0.0})
    assert res.layer == 0 and res.k in (1, 2)  # chosen on the selection half
    t = res.tested()
    assert t["diff"] > 0.3 and t.diff_ci_low > 0 and t.diff_ci_low <= t["diff"] <= t.diff_ci_high
    assert t.n_test_questions == N_Q // 2 and res.pair_test["n_questions"] == N_Q // 2
    assert res.pair_test["pair_diff_ci_low"] > 0  # similar prompts shift alike after misaligned training only
    # the raw shifts of BOTH runs overlap far above random subspaces: the common shift any fine-tune has
    top1 = res.sweep.set_index(["run", "layer", "k", "shifts"]).loc[("control", 0, 1, "raw")]
    assert top1.overlap > 0.9 and top1.z > 10
    assert res.shift_row("control").common_fraction_train > 0.5
    v = res.verdict()
    assert v.verdict == "supported" and "pair-similarity ρ" in v.number
    assert "SESOI: overlap 0.05, pair ρ 0.1" in v.reason
    assert "(b) prompts with similar base activations" in v.claim  # the claim as tested
    assert res.findings()[0].startswith("Claim 3 is supported")
    out = res.save(tmp_path / "ov")
    assert {p.name for p in out.iterdir()} == {"table.parquet", "shifts.parquet", "test.parquet", "selection.parquet",
                                                "plot.png", "summary.json", "summary.txt"}
    s = json.loads((out / "summary.json").read_text())
    assert s["verdict"]["verdict"] == "supported" and s["diff_mr_ci_low"] > 0 and s["test_pair_diff_ci_low"] > 0


def test_equal_runs_are_not_credited():
    res = _result({"misaligned": 3.0, "control": 3.0})
    t = res.tested()
    assert t.diff_ci_low < 0 < t.diff_ci_high and res.pair_test["pair_diff_ci_low"] < 0
    assert res.verdict().verdict != "supported"
    assert res.findings()[0].startswith("The aligned control shows the same overlap")


def test_weak_effect_is_inconclusive():
    """A small specific subspace: the overlap half is shown, the pair-similarity half cannot be told on 20
    held-out questions, so the claim (both halves) is inconclusive and says which half."""
    res = _result({"misaligned": 0.3, "control": 0.0})
    parts = res.parts()
    assert parts["overlap"].supported and parts["pair similarity"].verdict == "inconclusive"
    v = res.verdict()
    assert v.verdict == "inconclusive" and v.reason.startswith("pair similarity:") and "too few held-out" in v.reason


def test_null_with_many_questions_is_not_supported():
    res = _result({"misaligned": 0.0, "control": 0.0}, n_q=160, sesoi=0.1, sesoi_pair_rho=0.3)
    t = res.tested()
    assert t.diff_ci_high < 0.1 and t.n_test_questions == 80
    v = res.verdict()
    assert v.verdict == "not supported" and "lies below the SESOI" in v.reason


def test_no_control_is_inconclusive_and_a_fixed_layer_is_respected():
    res = _result({"misaligned": 3.0}, layer_select=(1, 2))
    assert res.layer == 1 and res.k == 2 and res.verdict().verdict == "inconclusive"
    assert res.tested().n_test_questions == N_Q and "fixed a priori" in res.layer_select
    res0 = _result({"misaligned": 3.0, "control": 0.0}, layer_select=1)
    assert res0.layer == 1 and "layer 1 fixed" in res0.layer_select
    with pytest.raises(ConfigError, match="sesoi"):
        _result({"misaligned": 3.0, "control": 0.0}, sesoi=0.0)


def test_gram_overlap_matches_pca_overlap():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((30, D)) @ np.diag(np.linspace(3, 0.1, D)), rng.standard_normal((25, D))
    for center in (False, True):
        for k in (1, 3):
            want = overlap(pca_basis(a, k, center=center), pca_basis(b, k, center=center))
            assert gram_overlap(a @ a.T, b @ b.T, a @ b.T, k, center) == pytest.approx(want, abs=1e-8)
    assert np.isnan(gram_overlap(np.ones((3, 3)), b[:3] @ b[:3].T, np.ones((3, 3)), 2))  # rank 1 < k


def test_pair_correlation_detects_prompt_dependent_shifts():
    rng = np.random.default_rng(1)
    # shift = a fixed linear map of the prompt activation: similar prompts get similar shifts
    m = rng.standard_normal((D, D)) / np.sqrt(D)
    bt, be = rng.standard_normal((64, L, D)), rng.standard_normal((40, L, D))
    qs = [f"q{i // 2}" for i in range(40)]  # 2 paraphrases per question
    _, shifts = run_tables(bt, be, {"misaligned": (bt + bt @ m, be + be @ m)}, [0, 1], qs, ks=(1,), n_random=20,
                           n_permutations=300)
    assert (shifts.pair_rho > 0.3).all() and (shifts.pair_p < 0.01).all()


def test_bad_inputs_are_one_line_errors():
    rng = np.random.default_rng(2)
    bt, be = rng.standard_normal((4, L, D)), rng.standard_normal((3, L, D))
    with pytest.raises(ConfigError, match="differ in shape"):
        run_tables(bt, be, {"misaligned": (rng.standard_normal((5, L, D)), be)}, [0, 1], ["a"] * 3)
    with pytest.raises(ConfigError, match="needs the misaligned"):
        overlap_from_activations(bt, be, {}, [0, 1], ["a"] * 3)
    with pytest.raises(ConfigError, match=">= 4 eval questions"):
        overlap_from_activations(bt, be, {"misaligned": (bt, be)}, [0, 1], ["a", "b", "c"], ks=(1,))


def test_overlap_on_loaded_models(tiny_model_dir):
    """The verb on loaded models (base, a 'misaligned' and a 'control' fine-tune: perturbed MLP weights)."""
    import torch

    from emprobe.analysis.overlap import overlap
    from emprobe.models import load_model
    from emprobe.probes import load_prompts

    base, tuned, ctrl = (load_model(str(tiny_model_dir), log=lambda *a: None) for _ in range(3))
    torch.manual_seed(0)
    with torch.no_grad():
        for lm in (tuned, ctrl):
            w = lm.model.model.layers[0].mlp.down_proj.weight
            w.add_(0.05 * torch.randn_like(w))
    eval_ps = load_prompts("builtin:em-core", limit=16)  # 8 questions x 2 paraphrases
    res = overlap(base, tuned, "builtin:risky-finance", eval_ps, control=ctrl, ks=(1, 2), n_train=16, n_random=20,
                  n_boot=50, n_permutations=50)
    assert set(res.sweep.run) == {"misaligned", "control"} and set(res.sweep.layer) == {0, 1}
    assert res.shifts.shift_norm_train.gt(0).all() and res.n_train == 16 and res.n_eval == 16
    assert res.verdict().verdict in ("supported", "not supported", "inconclusive")
    assert res.meta["model"] == str(tiny_model_dir) and len(res.findings()) >= 3
