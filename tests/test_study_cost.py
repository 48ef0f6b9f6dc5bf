"""The study cost model: the work counted from a config (runs, tokens, what the margin plan scores), the fit on
planted timings, the per-axis exponent, and the prediction the dry run prints."""

from __future__ import annotations

import json

import pytest

from emprobe.studies.config import preset
from emprobe.studies.cost import PARTS, StudyWork, describe, expected_longest, predict, study_work
from emprobe.studies.cost_fit import exponent, fit_part, identifiable, scale_part
from emprobe.studies.plan import expected_duplicates, margin_plan


def test_margin_plan_scores_only_what_analyses_read():
    cfg = preset("paper").with_(grid__seeds=(0, 1, 2))
    jobs = margin_plan(cfg)
    steps = cfg.training.checkpoints()
    n_cells = 2 * 3 * 2 * 3 + 2
    assert jobs[0].run == "base" and len(jobs) == 1 + n_cells + (len(steps) - 2) * (n_cells - 2)
    full = [j for j in jobs if j.pairs is None and j.run != "base"]
    assert len(full) == n_cells and {j.step for j in full} == {max(steps)}  # every last step on every pair
    assert {j.pairs for j in jobs if 0 < j.step < max(steps)} == {1}  # intermediate: the trend pair
    assert not any(j.run.endswith("control") and 0 < j.step < max(steps) for j in jobs)
    dup = expected_duplicates(cfg, jobs)
    assert len(dup) == 2 * 2 * 3 * 2  # WSD = constant at steps 4 and 8, per dataset x lr x seed
    assert all("warmup-stable-decay" in j.run and j.step <= 8 for j in dup)


def test_work_grows_with_the_axes():
    fast = preset("fast")
    w = study_work(fast, threads=2)
    assert w.runs == 2 and w.workers == 2 and w.train_tokens > 0 and w.val_tokens > 0
    more_q = study_work(fast.with_(questions__n_questions=16), threads=2)
    assert more_q.prompt_tokens == pytest.approx(2 * w.prompt_tokens, rel=0.3)
    assert more_q.train_tokens == w.train_tokens
    seeds = study_work(fast.with_(grid__seeds=(0, 1)), threads=2)
    assert seeds.runs == 3 and seeds.train_tokens == pytest.approx(1.5 * w.train_tokens, rel=0.01)


def _work(train, val, prompt, ref, workers=2):
    return StudyWork("m", 2, workers, train, val, prompt, ref, 3, ("setup", "finetune", "margins"))


def test_fit_recovers_planted_coefficients_and_exponents():
    works = [_work(t, v, p, r) for t, v, p, r in
             [(1e4, 2e3, 500, 900), (2e4, 2e3, 1000, 900), (1e4, 4e3, 500, 1800), (4e4, 8e3, 2000, 3600),
              (3e4, 1e3, 700, 2000)]]
    ft = [5 + (3e-3 * w.train_tokens + 1e-3 * w.val_tokens) / 2 for w in works]
    mg = [2 + 4e-3 * w.prompt_tokens + 9e-3 * w.ref_tokens for w in works]
    c = fit_part(works, ft, "finetuning")
    assert c["one"] == pytest.approx(5, rel=1e-3) and c["train_per_worker"] == pytest.approx(3e-3, rel=1e-3)
    assert c["val_per_worker"] == pytest.approx(1e-3, rel=1e-3)
    m = fit_part(works, mg, "margins")
    assert m["prompt_tokens"] == pytest.approx(4e-3, rel=1e-3) and m["ref_tokens"] == pytest.approx(9e-3, rel=1e-3)
    assert exponent([1, 2, 4], [3, 6, 12]) == pytest.approx(1.0)
    assert exponent([1, 2, 4], [5, 5, 5]) == pytest.approx(0.0, abs=1e-12)


def test_training_tokens_count_each_batch_padded_to_its_longest_row():
    from itertools import product

    sizes = [1, 2, 3, 4, 10]
    for b in (1, 2, 3):  # against every draw of b examples (with replacement)
        draws = list(product(sizes, repeat=b))
        assert expected_longest(sizes, b) == pytest.approx(sum(map(max, draws)) / len(draws))
    assert expected_longest(sizes, 1) == pytest.approx(4.0)
    assert expected_longest([7] * 5, 4) == pytest.approx(7.0)


def test_a_model_with_too_few_points_scales_the_first_models_coefficients():
    """A second model measured along the question axis only: its fine-tuning features never change, so its own fit
    is not identified; one measured factor per part on the first model's coefficients is."""
    first = {"one": 5.0, "train_per_worker": 3e-3, "val_per_worker": 1e-3}
    works = [_work(1e4, 2e3, p, r) for p, r in [(500, 900), (1000, 1800), (500, 900)]]
    assert not identifiable(works, "finetuning") and identifiable(
        [_work(t, v, 1, 1) for t, v in [(1e4, 2e3), (2e4, 2e3), (1e4, 4e3)]], "finetuning")
    secs = [2.7 * (5 + (3e-3 * w.train_tokens + 1e-3 * w.val_tokens) / 2) for w in works]
    coef, factor = scale_part(first, works, secs, "finetuning")
    assert factor == pytest.approx(2.7) and coef["train_per_worker"] == pytest.approx(2.7 * 3e-3)


def test_predict_sums_the_parts(tmp_path):
    coef = {"finetuning": {"one": 10.0, "train_per_worker": 1e-3, "val_per_worker": 5e-4},
            "margins": {"one": 3.0, "prompt_tokens": 1e-3, "ref_tokens": 2e-3},
            "stages": {"directions": 20.0, "patch": 30.0, "not-enabled": 99.0}, "params": 1.35e8}
    cm = {"models": {"smollm2-135m-instruct": coef}, "machine": {"threads": 2}}
    cfg = preset("fast").with_(stages=("finetune", "margins", "directions", "patch"))
    p = predict(cfg, cm, threads=2)
    w = p["work"]
    ft = 10 + (1e-3 * w["train_tokens"] + 5e-4 * w["val_tokens"]) / w["workers"]
    assert p["seconds"]["finetuning"] == pytest.approx(ft)
    assert set(p["seconds"]) == {*PARTS, "directions", "patch"}
    assert p["total_seconds"] == pytest.approx(sum(p["seconds"].values()))
    json.dumps(p)


def test_other_stages_scale_with_the_questions_they_score():
    """Causal checks grow with the causal questions (every control runs on each); the rest half with the
    off-domain questions (half is loading models); without the reference's basis the stage time is taken as is."""
    from emprobe.studies.cost import stage_basis

    coef = {"finetuning": {"one": 0.0, "train_per_worker": 0.0, "val_per_worker": 0.0},
            "margins": {"one": 0.0, "prompt_tokens": 0.0, "ref_tokens": 0.0},
            "stages": {"ablate": 40.0, "overlap": 12.0}, "params": 1.35e8}
    fast, demo = preset("fast"), preset("demo").with_(stages=("finetune", "margins", "overlap", "ablate"))
    ref, basis = stage_basis(fast), stage_basis(demo)
    assert ref == {"questions": 8, "causal": 3} and basis == {"questions": 30, "causal": 12}
    cm = {"models": {"smollm2-135m-instruct": {**coef, "stage_basis": ref}}, "machine": {}}
    sec = predict(demo, cm, threads=2)["seconds"]
    assert sec["ablate"] == pytest.approx(40.0 * 12 / 3) and sec["overlap"] == pytest.approx(12.0 * (0.5 + 0.5 * 30 / 8))
    old = predict(demo, {"models": {"smollm2-135m-instruct": coef}, "machine": {}}, threads=2)["seconds"]
    assert old["ablate"] == 40.0 and old["overlap"] == 12.0


def test_dry_run_prints_the_work_and_the_prediction_when_a_model_is_fitted(tmp_path, monkeypatch):
    from emprobe.errors import ConfigError
    from emprobe.studies import cost

    cfg = preset("paper")
    monkeypatch.setattr(cost, "MODEL_FILE", tmp_path / "none.json")
    lines = cost.dry_run(cfg, threads=2)
    n = len(margin_plan(cfg)) - len(expected_duplicates(cfg))
    assert lines[0].startswith("study paper on smollm2-135m-instruct: 38 fine-tuning runs x 16 steps")
    assert f"{n} models scored" in lines[1] and lines[-1].startswith("no predicted time: no cost model fitted")
    coef = {"finetuning": {"one": 10.0, "train_per_worker": 1e-3, "val_per_worker": 5e-4},
            "margins": {"one": 3.0, "prompt_tokens": 1e-3, "ref_tokens": 2e-3}, "stages": {}, "params": 1.35e8}
    (tmp_path / "cm.json").write_text(json.dumps({"models": {"smollm2-135m-instruct": coef}, "machine": {}}))
    lines = cost.dry_run(cfg, threads=2, cost_model=tmp_path / "cm.json")
    assert lines[2].startswith("predicted time") and lines[-1].split()[0] == "total"
    with pytest.raises(ConfigError, match="no cost model"):
        cost.dry_run(cfg, cost_model=tmp_path / "missing.json")


def test_the_dry_run_cautions_when_the_examples_are_longer_than_the_fitted_ones():
    coef = {"finetuning": {"one": 10.0, "train_per_worker": 1e-3, "val_per_worker": 5e-4},
            "margins": {"one": 3.0, "prompt_tokens": 1e-3, "ref_tokens": 2e-3}, "params": 1.35e8}
    cfg = preset("fast").with_(stages=("finetune", "margins"))
    for fitted, cautioned in ((20.0, True), (500.0, False)):
        cm = {"models": {"smollm2-135m-instruct": {**coef, "example_tokens": fitted}}, "machine": {"threads": 2}}
        lines = describe(cfg, predict(cfg, cm, threads=2))
        assert any(x.startswith("caution: its training batches run") for x in lines) is cautioned

