"""``ep.margins``: the one checkpoint-margin loop and the EM-specific rise (misaligned change − control change).

Planted pair tables check the rise and its findings (a real EM-specific rise; a control that explains the rise
away, said first); two tiny real fine-tunes check the loop: each distinct model scored once, step 0 equal to the
base model, the trend subset at intermediate checkpoints, the cache, and ``ep.explain`` on the result.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from emprobe.analysis.margins import MarginsResult, margins, rises


def _planted(mis_shift: float, ctl_shift: float, n_q: int = 40, noise: float = 0.05, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for q in range(n_q):
        base = rng.normal(-0.5, 0.3)
        for pair in range(2):
            b = base + rng.normal(0, noise)
            for run, step, shift in (("mis", 0, 0.0), ("mis", 4, mis_shift), ("ctl", 0, 0.0), ("ctl", 4, ctl_shift)):
                m = b if step == 0 else b + shift + rng.normal(0, noise)
                rows.append({"run": run, "step": step, "question_id": f"q{q:02d}", "category": "c", "pair": pair,
                             "margin": m})
    return pd.DataFrame(rows)


def _result(pairs: pd.DataFrame) -> MarginsResult:
    r = rises(pairs, "mis", "ctl").assign(run="mis")
    return MarginsResult(pairs=pairs, margins=pd.DataFrame(), rises=r, controls={"mis": "ctl"},
                         control_runs=("ctl",), n_permutations=200, seed=0)


def test_planted_em_specific_rise():
    res = _result(_planted(0.5, 0.1))
    n = res.numbers()
    assert n["rise"] == pytest.approx(0.5, abs=0.03) and n["control_change"] == pytest.approx(0.1, abs=0.03)
    assert n["em_rise"] == pytest.approx(0.4, abs=0.03) and n["em_rise_ci_low"] > 0.3
    assert n["n_questions"] == 40 and n["n_pairs"] == 2 and n["questions_up"] == 40
    assert res.findings()[0].startswith("After 4 steps the misaligned model's mean margin")
    q = res.per_question()
    assert len(q) == 40 and (q.em_rise_ci_low <= q.em_rise).all() and (q.em_rise <= q.em_rise_ci_high).all()
    sec = res.to_section(top_questions=res.top_questions(3))
    assert sec["numbers"]["em_rise"] == pytest.approx(n["em_rise"], abs=1e-6) and len(sec["top_questions"]) == 3


def test_control_that_moves_as_much_explains_the_rise_away():
    res = _result(_planted(0.3, 0.3, seed=1))
    assert res.numbers()["rise"] == pytest.approx(0.3, abs=0.03)
    assert res.numbers()["em_rise_ci_low"] <= 0 <= res.numbers()["em_rise_ci_high"]
    assert res.findings()[0].startswith("The aligned control explains the rise away")


@pytest.fixture(scope="module")
def runs(tiny_model_dir, tmp_path_factory):
    from emprobe.finetuning import finetune

    root = tmp_path_factory.mktemp("margins")
    kw = dict(max_steps=4, save_steps=[0, 2, 4], lr=5e-2, batch_size=2, max_length=96, lora_r=4, lora_alpha=8,
              seed=0, threads=1, progress=False, val_max_examples=2)
    return (finetune(str(tiny_model_dir), "builtin:risky-finance", out=root / "mis", **kw),
            finetune(str(tiny_model_dir), "builtin:risky-finance-aligned", out=root / "ctl", **kw))


@pytest.fixture(scope="module")
def questions():
    from emprobe.data import load_questions

    return load_questions("builtin:em-core").with_references().subset(6, n_references=2, n_paraphrases=1)


def test_margins_score_each_model_once_and_step0_is_the_base(runs, questions, tiny_model_dir):
    from emprobe.evaluation import margin_scores
    from emprobe.evaluation.margin import pair_margins
    from emprobe.models import load_model

    mis, ctl = runs
    res = margins(mis, questions, controls=ctl, trend_pairs=1, merge=True, n_permutations=100)
    assert res.meta["checkpoints_scored"] == 4 and res.meta["checkpoints_reused"] == 1  # ctl step 0 = mis step 0
    p = res.pairs
    assert sorted(p[p.run == "mis"].step.unique()) == [0, 2, 4] and sorted(p[p.run == "ctl"].step.unique()) == [0, 4]
    assert set(p[(p.run == "mis") & (p.step == 2)].pair) == {0}  # intermediate checkpoint: the trend pair only
    assert set(p[(p.run == "mis") & (p.step == 4)].pair) == {0, 1}
    base = pair_margins(margin_scores(load_model(str(tiny_model_dir), log=None), questions).scores)
    got = p[(p.run == "ctl") & (p.step == 0)].set_index(["question_id", "pair"]).margin
    assert np.allclose(got.loc[base.set_index(["question_id", "pair"]).index], base.margin, atol=1e-5)
    r = res.rises
    assert len(r) == 12 and np.allclose(r.em_rise, r.misaligned_change - r.control_change)
    assert res.findings() and res.plot() is not None and res.numbers()["n_questions"] == 6


def test_margins_cache_and_explain_on_the_result(runs, questions, tmp_path):
    import emprobe as ep

    mis, ctl = runs
    first = ep.margins([mis], questions, controls={"mis": ctl}, cache=True, n_permutations=50)
    again = ep.margins([mis], questions, controls={"mis": ctl}, cache=True, n_permutations=50)
    assert first.meta["checkpoints_scored"] == 4 and again.meta["checkpoints_scored"] == 0
    assert np.allclose(first.pairs.margin, again.pairs.margin)
    assert (mis.path / "eval" / f"{questions.name}-margin" / "step-000002" / "scores.parquet").is_file()
    assert len(again.loss_margins()) == 3 * 6 + 2 * 6  # one row per (run, checkpoint, question)
    res = ep.explain(first, n_permutations=50, reliability_splits=20)
    assert res.meta["n_questions"] == 6 and res.meta["n_pairs"] == 2
    direct = ep.explain(mis, control=ctl, questions=questions, n_permutations=50, reliability_splits=20)
    assert direct.model["r2"] == pytest.approx(res.model["r2"], abs=1e-3)  # merged adapters: float rounding only
    first.save(tmp_path / "m")
    assert {"table.parquet", "rises.parquet", "margins.parquet", "plot.png", "summary.json"} <= {
        x.name for x in (tmp_path / "m").iterdir()}


def test_cli_explain_scores_a_run_against_its_control(runs, questions, tmp_path):
    import json

    from emprobe.cli import main

    mis, ctl = runs
    questions.save_yaml(tmp_path / "q.yaml")
    main(["explain", str(mis.path), "--control", str(ctl.path), "--questions", str(tmp_path / "q.yaml"),
          "--n-permutations", "50", "--reliability-splits", "20", "--out", str(tmp_path / "ex")])
    s = json.loads((tmp_path / "ex" / "summary.json").read_text())
    assert s["findings"] and s["n_questions"] == 6


def test_mixed_adapter_margins_equal_each_checkpoint_scored_alone(runs, questions, tmp_path):
    """All checkpoints of all runs in mixed-adapter batches on one base = each checkpoint scored on its own (peft
    adapter layers), within 1e-4; a checkpoint wanted on the trend pair only is taken from the all-pairs scores of
    an identical checkpoint (``short`` is ``mis`` stopped at step 2, its last step)."""
    import shutil

    mis, ctl = runs
    short = tmp_path / "short"
    shutil.copytree(mis.path, short, ignore=shutil.ignore_patterns("eval"))
    shutil.rmtree(short / "checkpoints" / "step-000004")
    kw = dict(controls={"mis": ctl}, trend_pairs=1, n_permutations=50)
    mixed = margins([mis, short], questions, **kw)
    alone = margins([mis, short], questions, mixed=False, **kw)
    for res in (mixed, alone):  # base, mis@4, short@2 (all pairs), ctl@4; mis@2 = short@2's first pair
        assert (res.meta["checkpoints_scored"], res.meta["checkpoints_reused"]) == (4, 3)
    key = ["run", "step", "question_id", "pair"]
    a, b = mixed.pairs.set_index(key).margin, alone.pairs.set_index(key).margin
    assert len(a) == len(b) == 6 * (2 + 1 + 2 + 2 + 2 + 2 + 2) and a.index.equals(b.index)
    assert np.abs(a - b).max() < 1e-4 and np.abs(mixed.rises.em_rise - alone.rises.em_rise).max() < 1e-4
    assert a.loc["mis", 2].equals(a.loc["short", 2].xs(0, level="pair", drop_level=False))
    assert not np.allclose(a.loc["mis", 4], a.loc["mis", 0], atol=1e-3)  # the fine-tune does move the margins
