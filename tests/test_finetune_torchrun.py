"""The same command runs data-parallel under torchrun (2 CPU processes, gloo) into one run directory."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from emprobe.finetuning import load_run
from emprobe.models import load_model


@pytest.mark.slow
def test_torchrun_two_processes_write_one_run(tmp_path, tiny_model_dir):
    emprobe = shutil.which("emprobe", path=str(Path(sys.executable).parent)) or shutil.which("emprobe")
    assert emprobe, "the emprobe console script is not installed"
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", emprobe,
           "finetune", "--model", str(tiny_model_dir), "--data", "builtin:risky-finance", "--out", str(out),
           "--max-steps", "4", "--save-steps", "0,2,4", "--batch-size", "2", "--max-length", "96",
           "--val-max-examples", "4", "--lr", "1e-2", "--threads", "1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # its own process group: a hang kills the workers too
    try:
        stdout, stderr = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun hung; stderr tail: {stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    assert stdout.count("status complete") == 1  # only rank 0 reports
    run = load_run(out)
    assert run.complete and run.manifest["world_size"] == 2 and run.manifest["effective_batch_size"] == 4
    assert [c.step for c in run.checkpoints()] == [0, 2, 4]
    assert [r["step"] for r in run.train_log()] == [1, 2, 3, 4]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "run.json", "train_log.jsonl"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000000", "step-000002", "step-000004"]
    # tokens seen count both ranks' batches: 4 steps x 2 ranks x 2 examples
    per_example = run.manifest["data"]["train_tokens"]["mean_length"]
    assert run.manifest["tokens_seen"] == pytest.approx(16 * per_example, rel=0.25)
    load_model(tiny_model_dir, adapter=run.checkpoint(4).path)
