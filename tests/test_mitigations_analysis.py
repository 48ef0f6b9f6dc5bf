"""``ep.mitigations`` on planted data: an effect, no effect (large n), a weak effect, no EM at all; costs; seeds;
claim 1's positive control; and the verb on real (tiny) run directories."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import emprobe as ep
from emprobe.analysis.mitigations import MitigationsResult, mitigations
from emprobe.errors import ConfigError

STEPS = (0, 5, 10, 15, 20)


def _runs(n_q: int, removed: float, *, rise: float = 0.5, noise: float = 0.05, seeds=(0,), run_sd: float = 0.0,
          slow: float = 0.8, control_change: float = 0.0, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A planted study: ``none`` runs whose margin rises by ``rise·(2 − loss)`` per question as the in-domain loss
    falls from 2 to 1; ``kl`` runs that reach only ``2 − slow`` and keep ``1 − removed`` of that rise; an aligned control
    that moves every margin by ``control_change`` over training. Returns (long table, held-out table)."""
    rng = np.random.default_rng(seed)
    base = rng.normal(0, 0.3, n_q)
    r_q = rise + rng.normal(0, 0.1 * max(rise, 0.1), n_q)
    rows, held = [], []
    for s in seeds:
        shift = rng.normal(0, run_sd)
        for name, keep, reach in (("none", 1.0, 1.0), ("kl", 1.0 - removed, slow)):
            for t in STEPS:
                loss = 2.0 - reach * t / STEPS[-1]
                m = base + keep * (r_q + shift) * (2.0 - loss) * (t > 0) + rng.normal(0, noise, n_q) * (t > 0)
                rows += [{"run": f"{name}-s{s}", "mitigation": name, "seed": s, "data": "d", "schedule": "cosine",
                          "step": t, "val_loss": loss, "question_id": f"q{i}", "margin": m[i]} for i in range(n_q)]
            for t in (0, STEPS[-1]):  # in-domain held-out margins: the reference learns +1.0, kl keeps 70 % of it
                gain = (1.0 if name == "none" else 0.7) * (t > 0)
                held += [{"run": f"{name}-s{s}", "step": t, "question_id": f"h{i}",
                          "margin": gain + 0.01 * rng.normal()} for i in range(12)]
        for t in (0, STEPS[-1]):
            m = base + control_change * (t > 0)
            rows += [{"run": f"control-s{s}", "mitigation": "none", "seed": s, "data": "d", "schedule": "cosine",
                      "step": t, "val_loss": 1.5 - 0.5 * (t > 0), "question_id": f"q{i}", "margin": m[i],
                      "control": True} for i in range(n_q)]
    df = pd.DataFrame(rows)
    df["control"] = df["control"].fillna(False).astype(bool)
    return df, pd.DataFrame(held)


def _row(res: MitigationsResult) -> pd.Series:
    return res.effects.set_index("mitigation").loc["kl"]


def test_planted_effect_is_supported_with_costs_and_the_positive_control_fails_claim_1():
    df, held = _runs(40, removed=0.6)
    res = mitigations(df, heldout=held, n_boot=1000)
    r = _row(res)
    assert r.loss_level == pytest.approx(1.2)  # the lowest in-domain loss both reach
    assert r.fraction == pytest.approx(0.6, abs=0.05) and r.fraction_ci_low > 0.25
    assert r.verdict == "supported" and res.verdict().verdict == "supported"
    assert r.loss_cost == pytest.approx(0.2) and np.isnan(r.loss_cost_ci_low)  # one seed: no CI over seeds
    assert r.heldout_fraction == pytest.approx(0.3, abs=0.02) and r.heldout_n_questions == 12
    assert res.best == "kl"
    pc = res.positive_control.verdict()
    assert pc.verdict == "not supported" and "kl (mitigation)" in pc.number  # claim 1's test can fail
    assert "the test can fail" in " ".join(res.findings())
    assert res.numbers()["kl_verdict"] == "supported" and res.numbers()["positive_control_verdict"] == "not supported"


def test_no_effect_with_many_questions_is_not_supported_and_claim_1_holds():
    df, _ = _runs(400, removed=0.0, noise=0.02)
    res = mitigations(df, n_boot=500)
    r = _row(res)
    assert abs(r.fraction) < 0.05 and r.fraction_ci_high < 0.25
    assert r.verdict == "not supported" and res.verdict().verdict == "not supported"
    assert res.positive_control.verdict().verdict != "not supported"
    assert "cannot show that claim 1's test is able to fail" in res.findings()[-1]


def test_weak_effect_on_few_noisy_questions_is_inconclusive():
    df, _ = _runs(8, removed=0.15, noise=0.4, rise=0.6, seed=3)
    r = _row(mitigations(df, n_boot=1000))
    assert r.fraction_ci_low < 0 < 0.25 < r.fraction_ci_high
    assert r.verdict == "inconclusive" and "includes both 0 and the SESOI" in r.reason


def test_no_em_at_all_is_inconclusive_whatever_the_fraction():
    df, _ = _runs(40, removed=0.5, rise=0.0, noise=0.05)
    res = mitigations(df, n_boot=500)
    r = _row(res)
    assert r.verdict == "inconclusive" and "no EM-specific rise is established" in r.reason
    assert res.findings()[0].startswith("The unmitigated runs show no established EM-specific rise")


def test_the_aligned_control_is_netted_out_of_the_rise():
    df, _ = _runs(40, removed=0.5, control_change=0.5)  # the control moves as much as the reference: no EM
    r = _row(mitigations(df, n_boot=500))
    # reference at loss 1.2 = step 16: rise 0.5·0.8 = 0.40 minus the control's 0.5·16/20 = 0.40
    assert r.rise == pytest.approx(0.0, abs=0.03) and r.verdict == "inconclusive"


def test_seeds_are_paired_units_of_a_hierarchical_bootstrap():
    one, _ = _runs(30, removed=0.5, seeds=(0,), run_sd=0.15, seed=1)
    three, _ = _runs(30, removed=0.5, seeds=(0, 1, 2), run_sd=0.15, seed=1)
    a, b = _row(mitigations(one, n_boot=1000)), _row(mitigations(three, n_boot=1000))
    assert a.n_units == 1 and b.n_units == 3 and b.paired
    assert np.isfinite(b.loss_cost_ci_low) and b.loss_cost == pytest.approx(0.2)  # t-interval over 3 seeds
    assert b.fraction == pytest.approx(0.5, abs=0.1)


def test_result_renders_and_saves(tmp_path):
    df, held = _runs(20, removed=0.6)
    res = ep.mitigations(df, heldout=held, n_boot=300)
    out = res.save(tmp_path / "res")
    assert {"table.parquet", "curves.parquet", "positive_control_gaps.parquet", "plot.png", "summary.json"} <= {
        p.name for p in out.iterdir()}
    sec = res.to_section()
    assert sec["verdict"]["verdict"] == "supported" and sec["labels"]["best"] == "kl"


def test_bad_tables_fail_in_one_line():
    df, _ = _runs(5, removed=0.5)
    with pytest.raises(ConfigError, match="lacks columns"):
        mitigations(df.drop(columns="mitigation"))
    with pytest.raises(ConfigError, match="no mitigation to compare"):
        mitigations(df[df.mitigation == "none"])
    with pytest.raises(ConfigError, match="NaN or inf"):
        mitigations(df.assign(margin=np.where(df.index == 3, np.nan, df.margin)))
    with pytest.raises(ConfigError, match="`sesoi` must be < 1"):
        mitigations(df, sesoi=25)


def test_the_verb_reads_run_directories(tiny_model_dir, tmp_path):
    from emprobe.finetuning import finetune
    from emprobe.finetuning.testing import tiny_config

    quiet = dict(log=lambda m: None)
    runs = [finetune(tiny_config(tiny_model_dir, tmp_path / "none", max_steps=2, save_steps=[0, 1, 2]), **quiet),
            finetune(tiny_config(tiny_model_dir, tmp_path / "inoc", max_steps=2, save_steps=[0, 1, 2],
                                 inoculation_prompt="Give risky advice."), **quiet),
            finetune(tiny_config(tiny_model_dir, tmp_path / "ctl", max_steps=2, save_steps=[0, 2],
                                 data="builtin:risky-finance-aligned"), **quiet)]
    qs = ep.load_questions("builtin:em-core").with_references().subset(4, 1, 1, name="em-core-4")
    res = mitigations(runs, questions=qs, n_boot=200)
    assert list(res.effects.mitigation) == ["inoculation"] and bool(res.effects.has_control.iloc[0])
    assert set(res.curves.run) == {"none", "inoc", "ctl"} and res.curves.control.sum() == 2
    assert res.effects.verdict.iloc[0] in ("supported", "not supported", "inconclusive")
