"""Executors: where the cells of a sweep (one :class:`~emprobe.finetuning.FinetuneConfig` each) are trained.

>>> from emprobe.finetuning.executors import get_executor
>>> outcomes = get_executor("local").run(cells, names=names)        # subprocesses on this machine
>>> outcomes = get_executor("ray", address="auto").run(cells)       # Ray tasks on a cluster

Every cell runs as its own process, ``python -m emprobe.finetuning --cell CONFIG_JSON``: never a fork or
spawn of the caller's ``__main__``, so a plain script without an ``if __name__ == "__main__":`` guard, a
notebook and ``python -c`` all work. A cell whose run directory is complete is skipped (with ``resume``
set, as sweeps do; its settings are still checked), a partial one is resumed. A cell that dies (killed,
crashed) is retried up to ``max_retries`` times, resuming from its last checkpoint; a cell that fails with an
emprobe error (bad settings or data) is not retried. Either way every cell ends with a :class:`CellOutcome`,
and one line is logged when it starts and when it ends.

* :class:`LocalExecutor` runs up to ``max_parallel`` cells side by side and splits the CPU threads
  (``threads``, default ``EMPROBE_THREADS`` or all cores) between them. On Linux a trainer dies with the
  process that started it (``PR_SET_PDEATHSIG``), and an interrupted executor terminates its trainers.
* :class:`RayExecutor` submits each cell as a Ray task with ``num_cpus_per_cell`` / ``num_gpus_per_cell``;
  the task starts the same cell process on its worker. Workers write the run directories themselves, so
  every node must see the sweep directory at the same path (a shared filesystem) and have emprobe installed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from emprobe.errors import ConfigError, EmprobeError
from emprobe.finetuning.config import FinetuneConfig

#: exit status of a cell process that failed with an emprobe error (deterministic: never retried)
EMPROBE_ERROR_EXIT = 2


@dataclass
class CellOutcome:
    """How one cell ended: ``status`` is ``"ok"`` (trained now), ``"skipped"`` (already complete) or ``"failed"``;
    ``seconds`` and ``attempts`` count every attempt; ``error`` is one line."""

    name: str
    out: Path
    status: str
    seconds: float = 0.0
    error: str | None = None
    attempts: int = 0


# ---------------------------------------------------------------------------------------- cell processes
def cell_command(cfg: FinetuneConfig) -> list[str]:
    return [sys.executable, "-m", "emprobe.finetuning", "--cell", json.dumps(cfg.to_dict())]


def _die_with_parent(parent: int) -> Callable[[], None]:
    """``preexec_fn``: the child gets SIGTERM when the thread that started it dies (Linux), even by SIGKILL."""

    def setup() -> None:
        if sys.platform.startswith("linux"):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return setup


def start_cell(cfg: FinetuneConfig, log, cwd: str | None = None) -> subprocess.Popen:
    """Start the cell process for ``cfg`` (threads from ``cfg.threads``), output to the open file ``log``."""
    env = dict(os.environ)
    if cfg.threads:
        env.update(OMP_NUM_THREADS=str(cfg.threads), MKL_NUM_THREADS=str(cfg.threads))
    return subprocess.Popen(cell_command(cfg), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, cwd=cwd, preexec_fn=_die_with_parent(os.getpid()))


def stop(procs: Sequence[subprocess.Popen], grace: float = 10.0) -> None:
    """Terminate cell processes (SIGTERM, then SIGKILL after ``grace`` seconds)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def cell_error(returncode: int, output: str) -> str:
    """One line saying why a cell process failed."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    msg = next((line for line in reversed(lines) if line.startswith("error: ")), lines[-1] if lines else "")
    return msg.removeprefix("error: ") or f"exit status {returncode}"


def run_cell_process(cfg: dict[str, Any], cwd: str | None = None) -> tuple[int, str | None, float]:
    """Run one cell process to its end here: ``(returncode, error or None, seconds)``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+", prefix="emprobe-cell-") as log:
        proc = start_cell(FinetuneConfig.from_dict(cfg), log, cwd if cwd and os.path.isdir(cwd) else None)
        try:
            rc = proc.wait()
        finally:
            stop([proc])
        log.seek(0)
        return rc, None if rc == 0 else cell_error(rc, log.read()[-20000:]), time.perf_counter() - t0


def _retriable(returncode: int | None) -> bool:
    return returncode != EMPROBE_ERROR_EXIT


# ---------------------------------------------------------------------------------------- executors
class Executor(ABC):
    """Runs cells; subclasses implement :meth:`_execute` for the cells left after skipping complete ones."""

    name = "executor"
    max_retries = 1

    def run(self, cells: Sequence[FinetuneConfig], *, names: Sequence[str] | None = None,
            log: Callable[[str], None] | None = print,
            on_result: Callable[[int, CellOutcome], None] | None = None) -> list[CellOutcome]:
        """Train ``cells``; return one :class:`CellOutcome` per cell, in order. ``on_result(i, outcome)`` is
        called as each cell ends (skipped cells first)."""
        names = list(names) if names is not None else [Path(c.out).name for c in cells]
        if len(names) != len(cells):
            raise ConfigError(f"{len(cells)} cells but {len(names)} names")
        outs = [str(Path(c.out).resolve()) if c.out else "" for c in cells]
        dup = next((names[i] for i, o in enumerate(outs) if o and outs.index(o) != i), None)
        if dup:
            raise ConfigError(f"two cells write the same run directory (e.g. {dup})")
        self._log, self._on_result, self._n = log or (lambda m: None), on_result, len(cells)
        self._names, self.outcomes, self._spent = names, [None] * len(cells), [0.0] * len(cells)
        todo = [i for i, c in enumerate(cells) if not self._precheck(i, c)]
        if todo:
            self._execute([(i, cells[i].replace(progress=False)) for i in todo])
        return list(self.outcomes)

    # ------------------------------------------------------------------ shared steps
    def _precheck(self, i: int, cfg: FinetuneConfig) -> bool:
        """Settle a cell without running it (complete -> skipped, bad settings -> failed); True if settled."""
        from emprobe.finetuning.rundir import plan_run_dir

        try:
            if plan_run_dir(cfg.validate()).mode != "complete":
                return False
            self._finish(i, CellOutcome(self._names[i], Path(cfg.out), "skipped"))
        except EmprobeError as e:
            self._finish(i, CellOutcome(self._names[i], Path(cfg.out or "."), "failed", error=str(e)))
        return True

    def _started(self, i: int, attempt: int, detail: str) -> None:
        again = f", attempt {attempt}" if attempt > 1 else ""
        self._log(f"[{i + 1}/{self._n}] {self._names[i]}: started ({detail}{again})")

    def _ended(self, i: int, cfg: FinetuneConfig, attempt: int, rc: int | None, error: str | None,
               seconds: float) -> FinetuneConfig | None:
        """Record a finished attempt; return the config to retry with, or ``None`` when the cell is settled."""
        self._spent[i] += seconds
        seconds = self._spent[i]  # over all attempts
        if rc == 0:
            self._finish(i, CellOutcome(self._names[i], Path(cfg.out), "ok", seconds, None, attempt))
            return None
        if _retriable(rc) and attempt <= self.max_retries:
            self._log(f"[{i + 1}/{self._n}] {self._names[i]}: {error}; retrying (resumes from its last checkpoint)")
            return cfg.replace(resume=True, overwrite=False)
        self._finish(i, CellOutcome(self._names[i], Path(cfg.out), "failed", seconds, error, attempt))
        return None

    def _finish(self, i: int, outcome: CellOutcome) -> None:
        self.outcomes[i] = outcome
        how = {"ok": f"done ({outcome.seconds:.1f} s)", "skipped": "complete, skipped"}.get(
            outcome.status, f"failed: {outcome.error}")
        self._log(f"[{i + 1}/{self._n}] {outcome.name}: {how}")
        if self._on_result is not None:
            self._on_result(i, outcome)

    @abstractmethod
    def _execute(self, cells: list[tuple[int, FinetuneConfig]]) -> None:
        """Run ``(index, config)`` cells, calling :meth:`_finish` for each as it ends."""


def default_threads() -> int:
    """``EMPROBE_THREADS`` if set, else the number of CPU cores."""
    env = os.environ.get("EMPROBE_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ConfigError(f"EMPROBE_THREADS must be a positive integer, got {env!r}")
        return int(env)
    return os.cpu_count() or 1


class LocalExecutor(Executor):
    """Cells on this machine, ``max_parallel`` at a time, ``threads`` split between them.

    By default each of the ``max_parallel`` slots is a worker process that trains its cells one after another
    (:mod:`emprobe.finetuning.workers`: Python, torch and the model start once per worker, not per cell, and
    each dataset's step 0 is validated once); ``reuse_processes=False`` starts one process per cell.
    """

    name = "local"

    def __init__(self, threads: int | None = None, max_parallel: int | None = None, max_retries: int = 1,
                 poll_s: float = 0.2, reuse_processes: bool = True) -> None:
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be >= 1, got {threads}")
        if max_parallel is not None and max_parallel < 1:
            raise ConfigError(f"max_parallel must be >= 1, got {max_parallel}")
        self.threads, self.max_parallel, self.max_retries, self.poll_s = threads, max_parallel, max_retries, poll_s
        self.reuse_processes = reuse_processes
        self.parallel = 1  # how many cells the last run had side by side

    def _execute(self, cells: list[tuple[int, FinetuneConfig]]) -> None:
        total = self.threads or default_threads()
        self.parallel = max(1, min(self.max_parallel or total, total, len(cells)))
        per_cell = max(1, total // self.parallel)
        queue = [(i, cfg.replace(threads=per_cell), 1) for i, cfg in cells]
        detail = f"{per_cell} thread{'s' * (per_cell > 1)}"
        if self.reuse_processes:
            from emprobe.finetuning.workers import WorkerPool

            WorkerPool(self.parallel, per_cell, self.poll_s).run(
                queue, lambda i, attempt, cfg: self._started(i, attempt, detail), self._ended)
            return
        running: dict[int, tuple[subprocess.Popen, Any, FinetuneConfig, int, float]] = {}
        try:
            while queue or running:
                while queue and len(running) < self.parallel:
                    i, cfg, attempt = queue.pop(0)
                    log = tempfile.TemporaryFile("w+", prefix="emprobe-cell-")
                    self._started(i, attempt, detail)
                    running[i] = (start_cell(cfg, log), log, cfg, attempt, time.perf_counter())
                time.sleep(self.poll_s)
                for i, (proc, log, cfg, attempt, t0) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[i]
                    log.seek(0)
                    output = log.read()[-20000:]
                    log.close()
                    again = self._ended(i, cfg, attempt, proc.returncode, cell_error(proc.returncode, output),
                                        time.perf_counter() - t0)
                    if again is not None:
                        queue.insert(0, (i, again, attempt + 1))
        finally:
            stop([p for p, *_ in running.values()])
            for _, log, *_ in running.values():
                log.close()


def get_executor(name: str, **kw: Any) -> Executor:
    """``get_executor("local", threads=..., max_parallel=...)`` or ``get_executor("ray", address=..., ...)``
    (which ignores ``threads`` / ``max_parallel``: a Ray cell uses ``num_cpus_per_cell`` threads)."""
    if name == "local":
        return LocalExecutor(**kw)
    if name == "ray":
        from emprobe.finetuning.ray_executor import RayExecutor

        kw.pop("threads", None), kw.pop("max_parallel", None)  # local CPU budget: a Ray cell declares its own
        return RayExecutor(**kw)
    raise ConfigError(f"unknown executor {name!r}; choose local or ray")


def __getattr__(name: str):  # RayExecutor without importing Ray until it is used
    if name == "RayExecutor":
        from emprobe.finetuning.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)
