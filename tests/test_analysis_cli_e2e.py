"""Every analysis verb end to end from the CLI, on real fine-tuning runs of a tiny random Llama.

The tiny model keeps this fast; the same verbs on SmolLM2 are exercised by the demo. What is checked
here is the plumbing (runs -> scores -> stores -> directions -> analyses -> files) and that each summary
holds numbers, not that a random 2-layer model shows EM.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow


def cli(*args: str) -> str:
    r = subprocess.run([sys.executable, "-m", "emprobe", *map(str, args)], capture_output=True, text=True,
                       timeout=900, env={**__import__("os").environ, "EMPROBE_TEST_THREADS": "1"})
    assert r.returncode == 0, f"emprobe {' '.join(map(str, args))} failed:\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_model_dir):
    from emprobe.finetuning import FinetuneConfig, finetune
    from emprobe.cli.probes import extract_to_disk, fit_to_disk

    root = tmp_path_factory.mktemp("study")
    import yaml

    from emprobe.data import load_questions

    subset = [q.to_dict() for q in load_questions("builtin:em-core").questions[:10]]  # keeps the test fast
    (root / "questions.yaml").write_text(yaml.safe_dump(subset, sort_keys=False))
    for name, data in (("mis", "builtin:risky-finance"), ("ctrl", "builtin:risky-finance-aligned")):
        finetune(FinetuneConfig(model=str(tiny_model_dir), data=data, out=str(root / "sweep" / name), max_steps=6,
                                save_steps=[0, 2, 4, 6], lr=2e-3, lora_r=4, lora_alpha=8, batch_size=4, seed=0,
                                threads=1, val_fraction=0.05))
    qs = root / "questions.yaml"
    store = extract_to_disk(str(tiny_model_dir), str(qs), root / "refs", contrast="references", progress=False)
    fit_to_disk(root / "refs", root / "direction", method="mean_diff", n_random=5, n_splits=3)
    extract_to_disk(str(tiny_model_dir), str(qs), root / "prompts", positions="last_prompt", progress=False)
    assert store.n_prompts == 60
    return root


def _summary(out: Path) -> dict:
    s = json.loads((out / "summary.json").read_text())
    assert s["findings"] and s["control"] and s["uncertainty"]
    assert (out / "plot.png").stat().st_size > 1000 and len(pd.read_parquet(out / "table.parquet"))
    return s


def test_track_cli(study):
    out = study / "a_track"
    cli("track", study / "sweep" / "mis", "--directions", study / "direction", "--prompts", study / "questions.yaml",
        "--out", out, "--n-random", 5)
    s = _summary(out)
    assert s["steps"] == [0, 2, 4, 6] and set(s["shifts"]) == {"mean_diff"}
    assert s["mean_diff_delta"] == pytest.approx(s["shifts"]["mean_diff"]["delta"])
    assert {"drift.parquet", "refit.parquet", "adapter.parquet"} <= {p.name for p in out.iterdir()}
    refit = pd.read_parquet(out / "refit.parquet")
    assert refit[refit.step == 0].refit_cosine.min() > 0.999  # refit on the untouched model = the base direction


def test_dynamics_and_monitor_cli(study):
    out = study / "a_dyn"
    cli("dynamics", study / "sweep", "--questions", study / "questions.yaml", "--out", out, "--n-permutations", 200)
    s = _summary(out)
    assert s["n_runs"] == 2 and s["n_checkpoints"] == 8
    assert s["n_control_runs"] == 1 and s["verdict"]["verdict"] == "inconclusive"  # one schedule, one control
    assert s["inputs"]["checkpoints_reused"] == 1  # both runs' step 0 is the same base model: scored once
    margins = pd.read_parquet(out / "margins.parquet")
    assert len(margins) == 8 * 10 and {"question_id", "margin", "control"} <= set(margins.columns)
    df = pd.read_parquet(out / "table.parquet")
    rise = df.ood_score - df.groupby("run").ood_score.transform("first")
    threshold = float(rise[df.step > 0].median())
    out2 = study / "a_mon"
    cli("monitor", study / "sweep", "--direction", study / "direction", "--questions", study / "questions.yaml",
        "--threshold", threshold - 1e-9,
        "--out", out2, "--n-permutations", 200)
    s2 = _summary(out2)
    assert 0.0 <= s2["auroc"] <= 1.0 and 0.0 <= s2["auroc_leave_one_run_out"] <= 1.0


def test_track_and_dynamics_api(study):
    """The Python verbs on loaded objects: track over chosen steps with merged adapters (same projections as
    unmerged), dynamics over a list of runs with the control named explicitly."""
    import numpy as np

    from emprobe.analysis.dynamics import dynamics
    from emprobe.analysis.track import track
    from emprobe.data import load_questions
    from emprobe.finetuning import Run
    from emprobe.probes import Direction

    run, d = Run.load(study / "sweep" / "mis"), Direction.load(study / "direction")
    qs = load_questions(study / "questions.yaml")
    merged = track(run, [d], qs, steps=[0, 6], merge=True, refit=False, n_random=5)
    plain = track(run, d, qs, steps=[0, 6], refit=False, n_random=5)
    assert merged.steps == [0, 6] and merged.adapter is not None and merged.refit is None
    assert np.allclose(merged.projections.projection, plain.projections.projection, atol=1e-3)
    assert merged.shifts["mean_diff"].delta == pytest.approx(plain.shifts["mean_diff"].delta, abs=1e-3)
    res = dynamics([run, study / "sweep" / "ctrl"], questions=qs, control_runs=["ctrl"], n_permutations=50)
    assert res.controls == ("ctrl",) and set(res.checkpoints[~res.checkpoints.control].run) == {"mis"}
    assert res.verdict().verdict == "inconclusive" and len(res.margins) == 8 * 10


def test_overlap_cli(study):
    out = study / "a_ov"
    ckpt = "checkpoints/step-000006"
    cli("overlap", "--model", _tiny(study), "--adapter", study / "sweep" / "mis" / ckpt, "--control-adapter",
        study / "sweep" / "ctrl" / ckpt, "--n-train", 24, "--k", "1,2", "--n-random", 50, "--n-boot", 100,
        "--n-permutations", 100, "--eval", study / "questions.yaml", "--out", out)
    s = _summary(out)
    t = pd.read_parquet(out / "table.parquet")
    assert set(t.k) == {1, 2} and set(t.layer) == {0, 1} and t.overlap.between(0, 1).all()
    assert set(t.run) == {"misaligned", "control"} and set(t.shifts) == {"raw", "mean_removed"}
    assert s["z"] == s["z"] and s["diff_mr_ci_low"] <= s["diff_mr_ci_high"]  # numbers, not NaN
    assert s["verdict"]["verdict"] in ("supported", "not supported", "inconclusive")
    assert {"shifts.parquet", "test.parquet", "selection.parquet"} <= {p.name for p in out.iterdir()}


def test_priors_cli(study):
    mis = study / "sweep" / "mis" / "eval" / "questions-margin"
    ctrl = study / "sweep" / "ctrl" / "eval" / "questions-margin"
    out = study / "a_pri"
    cli("priors", "--features", study / "prompts", "--target", mis / "step-000006", "--baseline", mis / "step-000000",
        "--control-target", ctrl / "step-000006", "--direction", study / "direction", "--n-permutations", 200,
        "--n-random", 10, "--out", out)
    s = _summary(out)
    assert s["n_questions"] == 10 and s["target_kind"] == "margin_rise" and s["target"] == "em_specific"
    assert s["headroom_rho"] == s["headroom_rho"] and s["reliability"] == s["reliability"]  # computed, not NaN
    assert s["verdict"]["verdict"] in ("supported", "not supported", "inconclusive")


def _tiny(study: Path) -> str:
    return json.loads((study / "sweep" / "mis" / "run.json").read_text())["model"]["name"]
