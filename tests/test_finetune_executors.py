"""The local executor: cells in worker processes (``python -m emprobe.finetuning --worker``) side by side, or
one ``--cell`` process each.

It works from a plain script without a main guard (a spawn pool re-ran such a script in every worker),
its trainers die with a SIGKILLed parent, a killed cell is retried (resuming), a bad one is reported; a worker
trains several cells with the same results as one process per cell, and validates each dataset's step 0 once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

from emprobe.errors import ConfigError
from emprobe.finetuning import finetune, load_run
from emprobe.finetuning.executors import LocalExecutor, cell_error, get_executor
from emprobe.finetuning.testing import tiny_config

NO_MAIN_GUARD = textwrap.dedent("""
    import json, sys
    from emprobe.finetuning.executors import LocalExecutor
    from emprobe.finetuning.testing import tiny_config

    model, out, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cells = [tiny_config(model, out + "/a", max_steps=steps, save_steps=[0, steps]),
             tiny_config(model, out + "/b", max_steps=steps, save_steps=[0, steps], data="builtin:risky-finance-aligned")]
    ex = LocalExecutor(threads=2)
    outcomes = ex.run(cells)
    print("RESULT", json.dumps({"status": [o.status for o in outcomes], "parallel": ex.parallel}), flush=True)
""")


def _trainers(parent_pid: int) -> list[psutil.Process]:
    """Cell and worker processes started by ``parent_pid``."""
    try:
        kids = psutil.Process(parent_pid).children()
    except psutil.NoSuchProcess:
        return []
    return [p for p in kids if {"--cell", "--worker"} & set(p.cmdline())]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_script_without_main_guard_trains_two_cells_side_by_side(tmp_path, tiny_model_dir):
    script = tmp_path / "plain.py"
    script.write_text(NO_MAIN_GUARD)
    proc = subprocess.run([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "out"), "2"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result == {"status": ["ok", "ok"], "parallel": 2}
    assert proc.stdout.count("started (1 thread)") == 2 and proc.stdout.count(": done (") == 2  # progress per cell
    for name in ("a", "b"):
        run = load_run(tmp_path / "out" / name)
        assert run.complete and [c.step for c in run.checkpoints()] == [0, 2]
    assert load_run(tmp_path / "out" / "b").manifest["data"]["name"] == "risky-finance-aligned"


def test_sigkilled_parent_leaves_no_trainer_running(tmp_path, tiny_model_dir):
    script = tmp_path / "plain.py"
    script.write_text(NO_MAIN_GUARD)
    parent = subprocess.Popen([sys.executable, str(script), str(tiny_model_dir), str(tmp_path / "out"), "100000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while len(trainers := _trainers(parent.pid)) < 2 and time.monotonic() < deadline:
            assert parent.poll() is None, "the script ended before starting its trainers"
            time.sleep(0.2)
        assert len(trainers) == 2
        time.sleep(1.0)  # let the trainers get going (importing, loading)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in trainers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in trainers), "a trainer outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_killed_cell_is_retried_and_bad_cells_are_reported(tmp_path, tiny_model_dir):
    done = finetune(tiny_config(tiny_model_dir, tmp_path / "done", max_steps=2, save_steps=[0, 2]), log=lambda m: None)
    steps = dict(max_steps=8, save_steps=[0, 2, 4, 6, 8])
    cells = [tiny_config(tiny_model_dir, tmp_path / "bad", data=str(tmp_path / "missing.jsonl")),
             tiny_config(tiny_model_dir, tmp_path / "killed", **steps),
             tiny_config(tiny_model_dir, done.path, max_steps=2, save_steps=[0, 2], resume=True)]
    killed: list[int] = []

    def kill_first_trainer() -> None:  # SIGKILL the worker (one thread: one worker) once "killed" has step 2 on disk
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if (tmp_path / "killed" / "checkpoints" / "step-000002").is_dir():
                for p in _trainers(os.getpid()):
                    p.send_signal(signal.SIGKILL)
                    killed.append(p.pid)
            time.sleep(0.01)

    watcher = threading.Thread(target=kill_first_trainer, daemon=True)
    watcher.start()
    lines: list[str] = []
    outcomes = LocalExecutor(threads=1, poll_s=0.05).run(cells, names=["bad", "killed", "done"], log=lines.append)
    watcher.join(1)
    assert killed, "the watcher never saw the cell running"
    bad, retried, skipped = outcomes
    assert (bad.status, bad.attempts) == ("failed", 1) and "missing.jsonl" in bad.error and "\n" not in bad.error
    assert (skipped.status, skipped.attempts) == ("skipped", 0)
    assert (retried.status, retried.attempts) == ("ok", 2), lines
    assert any("killed: killed by SIGKILL; retrying" in line for line in lines), lines
    run = load_run(tmp_path / "killed")
    assert run.complete and run.manifest["resumed_from"] and [c.step for c in run.checkpoints()] == [0, 2, 4, 6, 8]
    assert [r["step"] for r in run.train_log()] == list(range(1, 9))


def test_errors_are_one_line():
    assert cell_error(-signal.SIGKILL, "") == "killed by SIGKILL"
    assert cell_error(2, "noise\nerror: --lr must be > 0, got 0\n") == "--lr must be > 0, got 0"
    assert cell_error(1, "Traceback ...\nValueError: boom\n") == "ValueError: boom"
    with pytest.raises(ConfigError, match="unknown executor 'slurm'; choose local or ray"):
        get_executor("slurm")
    with pytest.raises(ConfigError, match="two cells write the same run directory"):
        LocalExecutor().run([tiny_config("m", "x"), tiny_config("m", Path("x").resolve())], log=None)


def test_workers_reproduce_one_process_per_cell_and_validate_step0_once(tmp_path, tiny_model_dir):
    """Three cells on one worker (two of one dataset, one of another) give the checkpoints that one process per
    cell gives, bit for bit; the worker validated each dataset's base model once (later runs: 0 s at step 0)."""
    def cells(root):
        return [tiny_config(tiny_model_dir, root / "a", seed=0), tiny_config(tiny_model_dir, root / "b", seed=1),
                tiny_config(tiny_model_dir, root / "c", data="builtin:risky-finance-aligned")]

    new = LocalExecutor(threads=1, poll_s=0.05).run(cells(tmp_path / "new"), log=None)
    old = LocalExecutor(threads=1, poll_s=0.05, reuse_processes=False).run(cells(tmp_path / "old"), log=None)
    assert [o.status for o in new + old] == ["ok"] * 6
    for name in "abc":
        a, b = load_run(tmp_path / "new" / name), load_run(tmp_path / "old" / name)
        assert [c.digest() for c in a.checkpoints()] == [c.digest() for c in b.checkpoints()]
        for ca, cb in zip(a.checkpoints(), b.checkpoints()):
            assert ca.val_loss == pytest.approx(cb.val_loss, abs=1e-6)
            assert ca.info["val_loss_ci"][0] <= ca.val_loss <= ca.info["val_loss_ci"][1]
            if ca.step:
                assert ca.info["val_loss_change"] == pytest.approx(ca.val_loss - a.checkpoint(0).val_loss)
    def shared(d):
        return [load_run(tmp_path / d / n).manifest["timings"]["checkpoints"][0].get("validation_shared", False)
                for n in "abc"]

    assert shared("new") == [False, True, False] and shared("old") == [False] * 3
