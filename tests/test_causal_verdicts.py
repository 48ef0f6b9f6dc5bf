"""The causal verdicts on planted numbers (no model): for steer, ablate and patch an effect → supported, no effect at a
large n → not supported, a weak effect → inconclusive, controls that do as much → not supported (said first), a
few controls that match → inconclusive (rank p), no gap established / a circular direction → inconclusive; and the
variance-matched control directions (covariance draws, shuffled-label mean differences) on a planted store."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from emprobe.analysis.ablate import AblateResult
from emprobe.analysis.causal import control_directions
from emprobe.analysis.causal_effect import CausalEffect
from emprobe.analysis.patch import PatchResult
from emprobe.analysis.steer import SteerResult
from emprobe.probes import Direction
from emprobe.probes.store import ActivationStore


def _q(n: int) -> list[str]:
    return [f"q{i:03d}" for i in range(n)]


# ---- the shared decision ---------------------------------------------------------------------------------
def test_causal_effect_rank_p_and_decisions():
    rng = np.random.default_rng(0)
    eff = 0.3 + 0.1 * rng.standard_normal(12)
    ctrl = 0.02 * rng.standard_normal((20, 12))
    e = CausalEffect.measure(eff, ctrl, 0.05)
    assert e.n_controls == 20 and e.n_beating == 0 and e.rank_p == pytest.approx(1 / 21)
    assert e.decision().verdict == "supported" and not e.controls_match
    ctrl[:3] += 0.6  # three controls do more than the effect: rank p 4/21
    e2 = CausalEffect.measure(eff, ctrl, 0.05)
    assert e2.rank_p == pytest.approx(4 / 21) and e2.excess.ci_low > 0 and e2.controls_match
    d = e2.decision()
    assert d.verdict == "inconclusive" and "3 of 20 controls" in d.reason
    assert CausalEffect.measure(eff, ctrl, 0.05).decision(cannot_test="no gap").verdict == "inconclusive"


# ---- steer ---------------------------------------------------------------------------------------------
def _steer(n_q: int, shift: float, sd: float, controls: list[float], seed: int = 0, **meta) -> SteerResult:
    rng = np.random.default_rng(seed)
    qids, clean = _q(n_q), rng.standard_normal(n_q) * 0.3
    s = shift + sd * rng.standard_normal(n_q)
    rows = [{"kind": "direction", "seed": 0, "alpha": a, "layer": 5, "question_id": q, "margin": m + a * d,
             "vector_norm": 1.0} for a in (-1.0, 0.0, 1.0) for q, m, d in zip(qids, clean, s)]
    rows += [{"kind": "covariance" if i % 2 else "shuffled", "seed": i, "alpha": 1.0, "layer": 5, "question_id": q,
              "margin": m + c + 0.05 * rng.standard_normal(), "vector_norm": 1.0}
             for i, c in enumerate(controls) for q, m in zip(qids, clean)]
    return SteerResult(pd.DataFrame(rows), 5, True, "mean_diff", 0.05, meta={"provenance": "disjoint", **meta})


def test_steer_verdicts_three_ways_planted():
    quiet = [0.0] * 20
    good = _steer(12, 0.30, 0.10, quiet)
    assert good.verdict().verdict == "supported" and good.findings()[0].startswith("Steering along the mean_diff")
    n = good.numbers()
    assert n["n_controls"] == 20 and n["rank_p"] == pytest.approx(1 / 21) and n["effect_ci_low"] > 0.2
    assert {"covariance_control_mean", "shuffled_control_mean"} <= set(n)
    null = _steer(400, 0.0, 0.10, quiet)  # no effect, a large n: the CI lies inside ±SESOI
    assert null.numbers()["effect_ci_high"] < 0.05 and null.verdict().verdict == "not supported"
    weak = _steer(12, 0.05, 0.15, quiet)  # CI spans 0 and the SESOI
    assert weak.verdict().verdict == "inconclusive" and "includes both 0 and the SESOI" in weak.verdict().reason


def test_steer_controls_first_and_wrong_sign_planted():
    matched = _steer(12, 0.30, 0.10, [0.30] * 20)  # variance-matched directions do as much
    assert matched.findings()[0].startswith("The controls match the effect")
    assert matched.verdict().verdict in ("not supported", "inconclusive")
    big = _steer(60, 0.30, 0.05, [0.30] * 20)
    assert big.verdict().verdict == "not supported" and "controls do as much" in big.verdict().reason
    wrong = _steer(12, -0.30, 0.10, [0.0] * 20)
    assert wrong.findings()[0].startswith("The effect has the wrong sign") and wrong.verdict().verdict == "not supported"
    circular = _steer(12, 0.30, 0.10, [0.0] * 20, provenance="overlap")
    assert circular.findings()[0].startswith("The direction was fit on the questions it is scored on")
    assert circular.verdict().verdict == "inconclusive" and "circular" in circular.verdict().reason


# ---- ablate --------------------------------------------------------------------------------------------
def _ablate(n_q: int, gap: float, did: float, sd: float, controls: list[float], seed: int = 0) -> AblateResult:
    rng = np.random.default_rng(seed)
    qids, ref = _q(n_q), 0.2 * rng.standard_normal(n_q)
    g = gap + sd * rng.standard_normal(n_q)
    d = did + sd * rng.standard_normal(n_q)
    rows = []
    for kind, i, removed in [("none", 0, np.zeros(n_q)), ("direction", 0, d)] + \
            [("covariance" if i % 2 else "shuffled", i, c + 0.02 * rng.standard_normal(n_q)) for i, c in enumerate(controls)]:
        shift = 0.1 * rng.standard_normal(n_q) if kind != "none" else np.zeros(n_q)  # moves both models alike
        rows += [{"kind": kind, "seed": i, "model": "reference", "question_id": q, "margin": r + s}
                 for q, r, s in zip(qids, ref, shift)]
        rows += [{"kind": kind, "seed": i, "model": "tuned", "question_id": q, "margin": r + s + gg - x}
                 for q, r, s, gg, x in zip(qids, ref, shift, g, removed)]
    return AblateResult(pd.DataFrame(rows), "mean_diff", 0.25, meta={"provenance": "disjoint", "reference": "base"})


def test_ablate_difference_in_differences_three_ways_planted():
    quiet = [0.0] * 20
    good = _ablate(12, 0.40, 0.30, 0.08, quiet)
    n = good.numbers()
    assert n["effect"] == pytest.approx(0.30, abs=0.06) and n["fraction_removed"] == pytest.approx(0.75, abs=0.2)
    assert n["gap_established"] and n["sesoi"] == pytest.approx(0.25 * n["gap"])
    assert good.verdict().verdict == "supported" and "rank p 0.048" in good.verdict().reason
    null = _ablate(400, 0.40, 0.0, 0.08, quiet)
    assert null.verdict().verdict == "not supported" and "below the SESOI" in null.verdict().reason
    weak = _ablate(12, 0.40, 0.06, 0.2, quiet)
    assert weak.verdict().verdict == "inconclusive"


def test_ablate_no_gap_controls_and_wrong_sign_planted(tmp_path):
    none = _ablate(12, 0.0, 0.0, 0.08, [0.0] * 20)  # no fine-tune gap (no EM): nothing to remove
    assert not none.numbers()["gap_established"] and none.verdict().verdict == "inconclusive"
    assert none.findings()[0].startswith("The fine-tune's gap over the base model is not established")
    matched = _ablate(60, 0.40, 0.30, 0.05, [0.30] * 20)
    assert matched.findings()[0].startswith("The controls match the effect")
    assert matched.verdict().verdict == "not supported"
    wrong = _ablate(12, 0.40, -0.30, 0.08, [0.0] * 20)
    assert wrong.findings()[0].startswith("The effect has the wrong sign") and wrong.verdict().verdict == "not supported"
    out = _ablate(12, 0.40, 0.30, 0.08, [0.0] * 20).save(tmp_path / "a")
    import json

    s = json.loads((out / "summary.json").read_text())
    for key in ("effect", "effect_ci_low", "effect_ci_high", "rank_p", "gap", "fraction_removed", "excess", "n_controls"):
        assert key in s, key


# ---- patch ---------------------------------------------------------------------------------------------
def _patch(n_q: int, gap: float, restored: dict, sd: float, control: float, seed: int = 0) -> PatchResult:
    """``restored``: {(layer, span): mean restored} for the real patch; the control restores ``control``."""
    rng = np.random.default_rng(seed)
    qids, base = _q(n_q), 0.2 * rng.standard_normal(n_q)
    tuned = base + gap + 0.05 * rng.standard_normal(n_q)
    clean = pd.DataFrame({"question_id": qids, "margin_base": base, "margin_tuned": tuned,
                          "half": rng.permutation(n_q) % 2})
    rows = [{"question_id": q, "direction": "base→tuned", "layer": layer, "span": span, "control": c,
             "margin": t - (control if c else r) - sd * rng.standard_normal()}
            for (layer, span), r in restored.items() for c in (False, True) for q, t in zip(qids, tuned)]
    return PatchResult(pd.DataFrame(rows), clean, 0.25)


def test_patch_cross_fitted_verdicts_planted():
    cells = {(3, "last_prompt"): 0.25, (6, "last_prompt"): 0.05}
    good = _patch(12, 0.4, cells, 0.05, 0.0)
    assert set(good.chosen().values()) == {(3, "last_prompt")} and good.verdict().verdict == "supported"
    null = _patch(400, 0.4, {(3, "last_prompt"): 0.0, (6, "prompt"): 0.0}, 0.1, 0.0)
    assert null.verdict().verdict == "not supported"  # the best of two null cells, chosen on the other half
    weak = _patch(12, 0.4, {(3, "last_prompt"): 0.05}, 0.2, 0.0)
    assert weak.verdict().verdict == "inconclusive"
    matched = _patch(60, 0.4, cells, 0.05, 0.25)  # another question's activation restores as much
    assert matched.findings()[0].startswith("The control matches the effect")
    assert matched.verdict().verdict == "not supported"
    nogap = _patch(12, 0.0, cells, 0.05, 0.0)
    assert nogap.findings()[0].startswith("The fine-tune's gap is not established")
    assert nogap.verdict().verdict == "inconclusive"


def test_patch_cells_are_chosen_on_the_other_half():
    res = _patch(20, 0.4, {(3, "prompt"): 0.1, (6, "prompt"): 0.1}, 0.0, 0.0)
    half = res.clean.set_index("question_id").half
    t = res.table.copy()  # layer 3 restores a lot on half 0 only, layer 6 on half 1 only
    boost = t.question_id.map(half).eq(0) == t.layer.eq(3)
    t.loc[boost & ~t.control, "margin"] -= 0.3
    res = PatchResult(t, res.clean, 0.25)
    assert res.chosen() == {0: (6, "prompt"), 1: (3, "prompt")}  # half 0 is measured where half 1 was best
    assert res.numbers()["effect"] == pytest.approx(0.1, abs=1e-9)  # not the in-sample best-of-cells 0.4


# ---- control directions ---------------------------------------------------------------------------------
def _store(n_q: int = 30, d: int = 16, seed: int = 0) -> tuple[ActivationStore, np.ndarray]:
    """References-like store: per question an aligned and a misaligned item (one pair), anisotropic activations,
    the misaligned item shifted along ``v``."""
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10, 0.1, d)
    v = np.zeros(d)
    v[d // 2] = 1.0
    x, recs = [], []
    for i in range(n_q):
        common = rng.standard_normal(d) * scales
        for label in (0, 1):
            x.append(common + 0.3 * rng.standard_normal(d) * scales + 2.0 * label * v)
            recs.append({"uid": f"{i}-{label}", "question_id": f"q{i:03d}", "label": label, "pair": f"q{i:03d}/0"})
    t = torch.tensor(np.stack(x)[:, None], dtype=torch.float32)
    return ActivationStore({"response_mean": t}, [4], recs, {}), v


def test_control_directions_are_variance_matched_and_oriented():
    store, v = _store()
    d = Direction("mean_diff", [4], torch.tensor(3.0 * v[None], dtype=torch.float32), "response_mean", best_layer=4)
    ctrls = control_directions(store, d, [4], exclude=["q000", "q001"], n_random=200, n_shuffled=200, seed=1)
    assert [k for k, _, _ in ctrls].count("covariance") == 200 and len(ctrls) == 400
    x = store.get("response_mean", [4]).numpy()[:, 0].astype(float)
    keep = ~np.isin(store.groups, ["q000", "q001"])
    sigma = np.cov(x[keep].T)
    y = store.labels[keep]
    true_diff = x[keep][y == 1].mean(0) - x[keep][y == 0].mean(0)
    for kind in ("covariance", "shuffled"):
        vecs = np.stack([c.vector(4, unit=False).numpy() for k, _, c in ctrls if k == kind])
        assert np.allclose(np.linalg.norm(vecs, axis=1), 3.0, atol=1e-4)  # the direction's norm
        assert (vecs @ true_diff > 0).all()  # oriented on the labels (misaligned projects higher)
        u = vecs / 3.0
        var_along = np.einsum("kd,de,ke->k", u, sigma, u).mean()
        iso = np.trace(sigma) / len(sigma)  # what isotropic random directions see
        assert var_along > 3 * iso  # drawn where the activations vary, like a real direction
    cov = np.stack([c.vector(4, unit=False).numpy() for k, _, c in ctrls if k == "covariance"]) / 3.0
    # covariance draws r ~ N(0, Σ): their directions concentrate on the top principal axes
    assert np.abs(cov[:, 0]).mean() > np.abs(cov[:, -1]).mean() * 20


def test_steer_sesoi_is_a_share_of_the_rise_and_no_rise_is_inconclusive():
    """The study's steering SESOI: 25 % of the EM-specific rise on the causal questions, stated beside it; with no
    rise established the verdict is inconclusive whatever the shift, and the first finding says why."""
    from emprobe.analysis.stats.verdict import Effect
    from emprobe.studies.stages.causal import steer_sesoi

    sesoi, basis, cannot = steer_sesoi(0.25, Effect(0.20, 0.12, 0.28))
    assert sesoi == pytest.approx(0.05) and cannot is None and basis.startswith("25% of the EM-specific rise +0.200")
    good = _steer(12, 0.30, 0.10, [0.0] * 20, sesoi_basis=basis)
    assert good.verdict().verdict == "supported" and f"SESOI 0.05 = {basis}" in good.findings()[1]
    sesoi, basis, cannot = steer_sesoi(0.25, Effect(0.04, -0.02, 0.10))  # rise not established
    assert sesoi == pytest.approx(0.01) and "no EM-specific rise is established" in cannot
    res = _steer(12, 0.30, 0.10, [0.0] * 20, sesoi_basis=basis, cannot_test=cannot)
    v = res.verdict()
    assert v.verdict == "inconclusive" and "no EM-specific rise" in v.reason
    assert res.findings()[0].startswith("The verdict is inconclusive: no EM-specific rise")
