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

import subprocess
import tempfile
import time
from typing import Any

from emprobe.errors import ConfigError
from emprobe.finetuning.config import FinetuneConfig
from emprobe.finetuning.processes import (  # noqa: F401  (re-exported: the executors' shared pieces)
    EMPROBE_ERROR_EXIT,
    CellOutcome,
    Executor,
    cell_command,
    cell_error,
    default_threads,
    run_cell_process,
    start_cell,
    stop,
)


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
