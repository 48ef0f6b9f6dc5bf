"""A sweep on a Ray cluster (``emprobe finetune sweep --executor ray``), as the README's cluster section runs it.

A one-node cluster (``ray start --head --node-ip-address 127.0.0.1 --num-cpus 2``, no dashboard) trains a
2-cell sweep of a tiny model; the Ray worker running one cell is SIGKILLed mid-run; the cell is retried
(resuming from its last checkpoint) and both runs end with the same per-step losses and validation losses
as the local executor's for the same seeds. The cluster is stopped at the end (its own process group).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("ray", reason="the Ray executor is an optional extra: pip install 'emprobe[ray]'")
psutil = pytest.importorskip("psutil")

from emprobe.finetuning import load_run  # noqa: E402
from emprobe.finetuning.executors import LocalExecutor  # noqa: E402
from emprobe.finetuning.sweep import Sweep, run_sweep  # noqa: E402
from emprobe.finetuning.testing import TINY_SETTINGS  # noqa: E402

BIN = Path(sys.executable).parent
ENV = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """``ray start --head`` on 127.0.0.1 with 2 CPUs in its own session; yields HOST:PORT; stops it after."""
    port = _free_port()
    log = open(tmp_path_factory.mktemp("ray") / "head.log", "w")
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
                             f"--port={port}", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
                             "--object-store-memory=100000000"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=ENV)
    try:
        deadline = time.monotonic() + 180
        while True:  # until the GCS accepts connections
            assert head.poll() is None and time.monotonic() < deadline, "ray start --head failed; see head.log"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        yield f"127.0.0.1:{port}"
    finally:
        # the head, its GCS, raylet and workers: the session it leads (SIGTERM alone drains for 30 s)
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            pass
        _kill_session(head.pid)
        head.wait(10)
        log.close()


def _kill_session(sid: int) -> None:
    """SIGKILL what is left of the session ``sid`` (the processes the test's ``ray start`` started)."""
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid:
                p.kill()
        except (ProcessLookupError, psutil.Error):
            pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(_in_session(p, sid) for p in psutil.process_iter()):
        time.sleep(0.2)


def _in_session(p, sid: int) -> bool:
    try:
        return os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE
    except (ProcessLookupError, psutil.Error):
        return False


def _write_sweep(path: Path, model: Path, out: Path) -> Path:
    base = {k: v for k, v in TINY_SETTINGS.items() if k not in ("threads", "progress", "data")}
    base.update(model=str(model), max_steps=8, save_steps=[0, 2, 4, 6, 8], lora_dropout=0.1, seed=3)
    path.write_text(yaml.safe_dump({"out": str(out), "base": base,
                                    "grid": {"data": ["builtin:risky-finance", "builtin:risky-finance-aligned"]}}))
    return path


def _kill_worker_of(run_dir: Path, driver: subprocess.Popen, timeout: float = 240) -> int:
    """SIGKILL the Ray worker whose cell process trains ``run_dir``, once its step-2 checkpoint exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and driver.poll() is None:
        if (run_dir / "checkpoints" / "step-000002").is_dir():
            for p in psutil.process_iter():
                try:
                    cmd = p.cmdline()
                    if "--cell" in cmd and f'"out": {json.dumps(str(run_dir))},' in " ".join(cmd):
                        worker = p.parent()
                        worker.kill()
                        p.wait(30)  # PR_SET_PDEATHSIG: the cell process dies with its worker
                        return worker.pid
                except psutil.Error:
                    continue
        time.sleep(0.01)
    raise AssertionError(f"never saw {run_dir.name} training (driver exit {driver.poll()})")


@pytest.mark.slow
def test_ray_sweep_survives_a_killed_worker_and_matches_local(tmp_path, tiny_model_dir, ray_head):
    sweep_file = _write_sweep(tmp_path / "sweep.yaml", tiny_model_dir, tmp_path / "ray")
    driver = subprocess.Popen([str(BIN / "emprobe"), "finetune", "sweep", str(sweep_file), "--executor", "ray",
                               "--ray-address", ray_head], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd=tmp_path, env=ENV)
    try:
        victim = tmp_path / "ray" / "data-risky-finance"
        _kill_worker_of(victim, driver)
        output, _ = driver.communicate(timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, output[-3000:]
    assert "data-risky-finance: Ray task failed: " in output and "retrying" in output, output[-3000:]
    rows = {r["name"]: r for r in json.loads((tmp_path / "ray" / "sweep.json").read_text())["runs"]}
    assert rows["data-risky-finance"]["status"] == "complete" and rows["data-risky-finance"]["attempts"] == 2
    assert rows["data-risky-finance-aligned"]["attempts"] == 1
    assert load_run(victim).manifest["resumed_from"]  # the retry continued the killed run

    local = run_sweep(Sweep.load(sweep_file, out=tmp_path / "local"), executor=LocalExecutor(threads=2),
                      log=lambda m: None)
    assert [r.status for r in local] == ["complete", "complete"]
    for r in local:
        a, b = load_run(r.out), load_run(tmp_path / "ray" / r.name)
        assert b.complete and [x["step"] for x in b.train_log()] == list(range(1, 9))
        for x, y in zip(a.train_log(), b.train_log()):
            assert y["loss"] == pytest.approx(x["loss"], abs=1e-4), (r.name, x["step"])
        assert [c.step for c in a.checkpoints()] == [c.step for c in b.checkpoints()] == [0, 2, 4, 6, 8]
        for x, y in zip(a.checkpoints(), b.checkpoints()):
            assert y.val_loss == pytest.approx(x.val_loss, abs=1e-4), (r.name, x.step)
    assert len({round(x["loss"], 3) for x in load_run(victim).train_log()}) > 4  # the losses move


def test_unreachable_cluster_is_one_line_error(tmp_path):
    from emprobe.errors import ConfigError
    from emprobe.finetuning.executors import get_executor
    from emprobe.finetuning.testing import tiny_config

    with pytest.raises(ConfigError, match="cannot reach a Ray cluster at '127.0.0.1:9'"):
        get_executor("ray", address="127.0.0.1:9").run([tiny_config("m", tmp_path / "x")], log=None)
