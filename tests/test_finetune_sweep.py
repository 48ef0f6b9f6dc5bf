"""Sweeps: a grid of runs in one directory; complete runs are skipped."""

from __future__ import annotations

import pytest
import yaml

from emprobe.errors import ConfigError
from emprobe.finetuning import load_run
from emprobe.finetuning.sweep import Sweep, run_sweep
from emprobe.finetuning.testing import TINY_SETTINGS


def write_sweep(path, model, out, grid):
    base = {k: v for k, v in TINY_SETTINGS.items() if k not in ("threads", "progress") and k not in grid}
    path.write_text(yaml.safe_dump({"out": str(out), "base": {**base, "model": str(model), "max_steps": 2,
                                                              "save_steps": [0, 2]}, "grid": grid}))
    return path


def test_sweep_runs_the_grid_and_skips_complete_runs(tmp_path, tiny_model_dir):
    grid = {"data": ["builtin:risky-finance", "builtin:risky-finance-aligned"], "lr": [1e-2, 1e-3]}
    f = write_sweep(tmp_path / "sweep.yaml", tiny_model_dir, tmp_path / "sweep", grid)
    sweep = Sweep.load(f)
    names = [n for n, _ in sweep.runs()]
    assert names == ["data-risky-finance__lr-0.01", "data-risky-finance__lr-0.001",
                     "data-risky-finance-aligned__lr-0.01", "data-risky-finance-aligned__lr-0.001"]
    sweep.grid["data"] = grid["data"][:1]  # train half now, as if the sweep was interrupted
    assert [r.status for r in run_sweep(sweep, threads=2, progress=False, log=lambda m: None)] == ["complete"] * 2
    first = load_run(tmp_path / "sweep" / names[0])
    mtime = (first.path / "run.json").stat().st_mtime_ns

    plan = run_sweep(Sweep.load(f), dry_run=True, log=lambda m: None)
    assert [r.status for r in plan] == ["skipped", "skipped", "planned", "planned"]
    results = run_sweep(Sweep.load(f), threads=2, progress=False, log=lambda m: None)
    assert [r.status for r in results] == ["skipped", "skipped", "complete", "complete"]
    assert (first.path / "run.json").stat().st_mtime_ns == mtime  # untouched
    runs = [load_run(tmp_path / "sweep" / n) for n in names]
    assert all(r.complete for r in runs)
    assert [r.settings["lr"] for r in runs] == [1e-2, 1e-3, 1e-2, 1e-3]
    assert runs[2].manifest["data"]["name"] == "risky-finance-aligned"
    manifest = yaml.safe_load((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["status"] for r in manifest["runs"]] == ["skipped", "skipped", "complete", "complete"]
    assert manifest["grid"] == grid


def test_sweep_file_errors_name_the_problem(tmp_path, tiny_model_dir):
    f = write_sweep(tmp_path / "s.yaml", tiny_model_dir, tmp_path / "o", {"learning_rate": [1e-3]})
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate' in grid"):
        Sweep.load(f)
    f = write_sweep(tmp_path / "s.yaml", tiny_model_dir, tmp_path / "o", {"lr": []})
    with pytest.raises(ConfigError, match="grid.lr must be a non-empty list"):
        Sweep.load(f)
    f = write_sweep(tmp_path / "s.yaml", tiny_model_dir, tmp_path / "o", {"schedule": ["cosine", "warm"]})
    with pytest.raises(ConfigError, match="unknown `schedule` 'warm'"):
        Sweep.load(f).runs()


def test_checkpoint_digest_finds_equal_weights_across_schedules(tmp_path, tiny_model_dir):
    """Warmup-stable-decay equals constant until its decay starts: same weights, same digest (the study scores
    such checkpoints once); after the decay the weights and the digests differ."""
    grid = {"schedule": ["constant", "warmup-stable-decay"]}
    f = write_sweep(tmp_path / "s.yaml", tiny_model_dir, tmp_path / "o", grid)
    spec = yaml.safe_load(f.read_text())
    spec["base"].update(max_steps=4, save_steps=[0, 2, 4], decay_fraction=0.5)
    f.write_text(yaml.safe_dump(spec))
    run_sweep(Sweep.load(f), threads=2, progress=False, log=lambda m: None)
    const, wsd = (load_run(tmp_path / "o" / n) for n, _ in Sweep.load(f).runs())
    assert [c.step for c in wsd.checkpoints()] == [0, 2, 4]
    for step, same in [(0, True), (2, True), (4, False)]:
        assert (const.checkpoint(step).digest() == wsd.checkpoint(step).digest()) is same, step
