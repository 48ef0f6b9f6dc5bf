"""Run-directory bookkeeping: what a crash leaves behind, and how resume cleans it up (no training)."""

from __future__ import annotations

import json

import pytest

from emprobe.errors import ConfigError
from emprobe.finetuning import FinetuneConfig, load_run
from emprobe.finetuning.rundir import RunWriter, plan_run_dir
from emprobe.io import manifest


def cfg(out, **kw) -> FinetuneConfig:
    return FinetuneConfig(model="m", data="builtin:risky-finance", out=str(out), max_steps=8,
                          save_steps=[0, 4, 8], **kw)


def crashed_run(out):
    """A run killed while writing checkpoint 8: complete checkpoints 0 and 4, a temp dir, a half state."""
    c = cfg(out)
    w = RunWriter(out, manifest("finetune-run", status="running", settings=c.run_settings(), model={"name": "m"},
                                checkpoints=[], created="then"))
    w.prepare(plan_run_dir(c))
    for step in (0, 4):
        w.write_checkpoint(step, lambda d: (d / "adapter_model.safetensors").write_bytes(b"x"),
                           {"train_loss": None, "val_loss": 1.0})
    for step in range(1, 8):
        w.add_log_row({"step": step, "loss": 1.0 / step, "tokens": 10 * step})
    (out / "state" / "checkpoint-4").mkdir(parents=True)
    (out / "state" / "checkpoint-4" / "trainer_state.json").write_text("{}")
    (out / "state" / "checkpoint-8").mkdir()  # killed while transformers wrote it
    (out / "checkpoints" / ".step-000008.abc.tmp").mkdir()  # killed inside atomic_dir
    return c


def test_reader_sees_only_complete_checkpoints(tmp_path):
    crashed_run(tmp_path / "r")
    run = load_run(tmp_path / "r")
    assert [c.step for c in run.checkpoints()] == [0, 4] and not run.complete
    assert [c["step"] for c in run.manifest["checkpoints"]] == [0, 4]


def test_resume_plan_and_cleanup(tmp_path):
    out = tmp_path / "r"
    c = crashed_run(out)
    with pytest.raises(ConfigError, match="holds a run; pass `resume` to continue it or `overwrite`"):
        plan_run_dir(c)
    plan = plan_run_dir(c.replace(resume=True))
    assert plan.mode == "resume" and plan.resume_step == 4 and plan.resume_from == str(out / "state" / "checkpoint-4")
    w = RunWriter(out, {"kind": "finetune-run", "status": "running", "settings": c.run_settings()})
    w.prepare(plan)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000000", "step-000004"]
    assert [p.name for p in (out / "state").iterdir()] == ["checkpoint-4"]
    assert [r["step"] for r in load_run(out).train_log()] == [1, 2, 3, 4]  # steps after 4 will be redone
    m = json.loads((out / "run.json").read_text())
    assert m["resumed_from"] == [4] and m["created"] == "then" and [x["step"] for x in m["checkpoints"]] == [0, 4]


def test_resume_refuses_missing_state_and_foreign_directories(tmp_path):
    out = tmp_path / "r"
    c = crashed_run(out)
    import shutil

    shutil.rmtree(out / "state")
    with pytest.raises(ConfigError, match=r"no optimizer state for its last checkpoint \(step 4\)"):
        plan_run_dir(c.replace(resume=True))
    assert plan_run_dir(c.replace(overwrite=True)).mode == "fresh"
    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="holds no emprobe run"):
        plan_run_dir(cfg(other, resume=True))
    for flags in ({}, {"overwrite": True}):  # never deleted, whatever the flags
        with pytest.raises(ConfigError, match="emprobe did not write"):
            plan_run_dir(cfg(other, **flags))
    assert [p.name for p in other.iterdir()] == ["x.txt"]
