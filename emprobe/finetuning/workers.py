"""Worker processes that train cells one after another: the local executor's way of running a sweep.

A cell process pays for starting Python, importing torch / transformers / peft and loading the model before
it trains (≈ 6 CPU-seconds for SmolLM2, the cost of a 16-step run's validation); a worker pays it once and
then trains every cell it is handed, in the same process, with the same ``finetune`` call as a cell process.
It also validates each base model once (a run's step 0 is its base model; see
:class:`~emprobe.finetuning.validation.StepZeroCache`), and the pool hands a free worker the next cell of the
dataset it trained last, so each dataset's step 0 is validated by one worker and read from a shared cache
directory by the others.

Protocol: ``python -m emprobe.finetuning --worker`` reads one cell config (JSON) per line on stdin and writes
one result line per cell on stdout (``{"status": "ok" | "failed", "error": ..., "seconds": ...}``); everything
else it prints goes to stderr (the pool's log). An emprobe error fails the cell and the worker carries on; any
other exception ends the worker (its state is unknown), and the pool retries the cell in a new worker.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from emprobe.finetuning.config import FinetuneConfig

#: where workers of one pool share step-0 validations (a temporary directory the pool creates)
VAL_CACHE_ENV = "EMPROBE_VAL_CACHE"


# ---------------------------------------------------------------------------------------- the worker side
def serve(stdin=None, results=None) -> int:
    """The worker loop (``python -m emprobe.finetuning --worker``)."""
    import gc

    from emprobe.errors import EmprobeError
    from emprobe.finetuning.trainer import finetune

    stdin = stdin or sys.stdin
    if results is None:  # results on the real stdout; everything printed while training goes to stderr
        results = os.fdopen(os.dup(1), "w")
        os.dup2(2, 1)
        sys.stdout = sys.stderr
    for line in stdin:
        if not line.strip():
            continue
        t0 = time.perf_counter()
        try:
            finetune(FinetuneConfig.from_dict(json.loads(line)))
            status, error = "ok", None
        except EmprobeError as e:
            print(f"error: {e}", file=sys.stderr, flush=True)
            status, error = "failed", str(e).splitlines()[0] if str(e) else type(e).__name__
        results.write(json.dumps({"status": status, "error": error, "seconds": time.perf_counter() - t0}) + "\n")
        results.flush()
        gc.collect()
    return 0


# ---------------------------------------------------------------------------------------- the pool side
@dataclass
class _Worker:
    proc: subprocess.Popen
    log: Any
    results: "queue.Queue[dict | None]" = field(default_factory=queue.Queue)
    job: tuple[int, FinetuneConfig, int, float] | None = None  # (index, config, attempt, start time)
    last_data: str | None = None


def _read_results(w: _Worker) -> None:
    for line in w.proc.stdout:
        try:
            w.results.put(json.loads(line))
        except json.JSONDecodeError:
            continue
    w.results.put(None)  # the worker closed its stdout: it ended


class WorkerPool:
    """``n`` worker processes with ``threads`` torch threads each; :meth:`run` feeds them cells.

    ``started(i, attempt, cfg)`` is called as cell ``i`` is handed out, ``ended(i, cfg, attempt, rc, error, s)``
    as it ends (``rc`` 0 = trained, 2 = failed with an emprobe error, else the worker died); ``ended`` returns a
    config to retry with, or ``None``.
    """

    def __init__(self, n: int, threads: int, poll_s: float = 0.2) -> None:
        self.n, self.threads, self.poll_s = n, threads, poll_s
        self.workers: list[_Worker] = []
        self.cache_dir = tempfile.mkdtemp(prefix="emprobe-val-cache-")

    def _spawn(self) -> _Worker:
        from emprobe.finetuning.processes import _die_with_parent

        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        env[VAL_CACHE_ENV] = self.cache_dir
        log = tempfile.TemporaryFile("w+", prefix="emprobe-worker-")
        proc = subprocess.Popen([sys.executable, "-m", "emprobe.finetuning", "--worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True, env=env,
                                preexec_fn=_die_with_parent(os.getpid()))
        w = _Worker(proc, log)
        threading.Thread(target=_read_results, args=(w,), daemon=True).start()
        self.workers.append(w)
        return w

    @staticmethod
    def _pick(todo: list, last: str | None, busy: set[str]) -> int:
        """The next cell for a worker: one of the dataset it trained last, else of a dataset nobody is training."""
        for want in ((lambda c: c.data == last), (lambda c: c.data not in busy)):
            hit = next((k for k, (_, cfg, _) in enumerate(todo) if want(cfg)), None)
            if hit is not None:
                return hit
        return 0

    def run(self, todo: list[tuple[int, FinetuneConfig, int]], started: Callable, ended: Callable) -> None:
        try:
            while todo or any(w.job for w in self.workers):
                for w in list(self.workers):
                    self._collect(w, todo, ended)
                idle = [w for w in self.workers if w.job is None]
                while todo and (idle or len(self.workers) < self.n):
                    w = idle.pop(0) if idle else self._spawn()
                    busy = {x.job[1].data for x in self.workers if x.job}
                    i, cfg, attempt = todo.pop(self._pick(todo, w.last_data, busy))
                    started(i, attempt, cfg)
                    w.job, w.last_data = (i, cfg, attempt, time.perf_counter()), cfg.data
                    w.proc.stdin.write(json.dumps(cfg.to_dict()) + "\n")
                    w.proc.stdin.flush()
                time.sleep(self.poll_s)
        finally:
            self.close()

    def _collect(self, w: _Worker, todo: list, ended: Callable) -> None:
        """Take ``w``'s finished cell, if any; a dead worker's cell ends with its exit status."""
        from emprobe.finetuning.executors import EMPROBE_ERROR_EXIT, cell_error

        if w.job is None:
            if w.proc.poll() is not None:
                self._drop(w)
            return
        try:
            res = w.results.get_nowait()
        except queue.Empty:
            return
        i, cfg, attempt, t0 = w.job
        w.job = None
        if res is None:  # died with the cell in flight
            rc = w.proc.wait()
            w.log.seek(0)
            again = ended(i, cfg, attempt, rc or 1, cell_error(rc or 1, w.log.read()[-20000:]), time.perf_counter() - t0)
            self._drop(w)
        else:
            rc = 0 if res["status"] == "ok" else EMPROBE_ERROR_EXIT
            again = ended(i, cfg, attempt, rc, res.get("error"), float(res["seconds"]))
        if again is not None:
            todo.insert(0, (i, again, attempt + 1))

    def _drop(self, w: _Worker) -> None:
        from emprobe.finetuning.executors import stop

        stop([w.proc])
        w.log.close()
        self.workers.remove(w)

    def close(self) -> None:
        import shutil

        for w in list(self.workers):
            if w.proc.stdin and not w.proc.stdin.closed:
                try:
                    w.proc.stdin.close()  # end of input: an idle worker exits by itself
                except OSError:
                    pass
        for w in list(self.workers):
            if w.job is None:
                try:
                    w.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            self._drop(w)
        shutil.rmtree(self.cache_dir, ignore_errors=True)
